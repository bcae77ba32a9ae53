// Package enrich finds the full Spectora record behind an event and
// republishes the event with it to the enriched stream: the built-in
// enricher group's work, and a helper for Go groups that want records too.
//
// Records are shared through a JetStream key-value bucket (stream.RecordBucket)
// by every group and instance, and concurrent look-ups of one record in a
// process share one fetch, so however many groups handle an event, Spectora's
// API is called about once per record change.
package enrich
