// Package natsx is the NATS plumbing the command shares between the gateway
// and the consumers: connecting (in-process to the embedded server, or to an
// external server or cluster), idempotent stream provisioning and readiness.
// It never links the NATS server; package embedded does.
package natsx
