// Package spectora is a client for Spectora's API as spectora-stream uses it:
// fetching one record (an inspection, an agent, a client) by resource and ID,
// with retries, backoff, Retry-After and a rate limit per company.
//
// Spectora's API is in early access. Its base URL and paths come from
// third-party code, not from public documentation, so every path is
// configurable (DefaultPaths lists the guesses).
package spectora
