// Package stream is spectora-stream's wire contract: the names of the JetStream
// streams, how subjects are built and parsed, the NATS header names and content
// types, and how a stored message decodes into its protobuf envelope. It is the
// only place any of these is spelled; the gateway, the consumer runtime, the
// operator commands and the tests all use it.
//
// A Go service in another team imports this package (and the generated types
// in proto/spectora/v1) to subscribe correctly; nothing in it dials NATS or
// links the NATS server.
//
// The subject map. Three streams, kept apart by token counts so they never
// overlap and `nats sub 'spectora.>'` sees all of them:
//
//	SPECTORA           spectora.<resource>.<action>                raw webhooks
//	                   spectora.redrive.<group>.<dlq-seq>          dead letters redriven to one group
//	SPECTORA_ENRICHED  spectora.enriched.<resource>.<action>       events with their full record
//	                   spectora.enriched.redrive.<group>.<dlq-seq> redriven enriched dead letters
//	SPECTORA_DLQ       spectora.dlq.<group>.<resource>.<action>    dead letters
//
// Redrive subjects have one token more than their stream's event subjects, so
// no group's default filter (spectora.*.* or spectora.enriched.*.*) matches
// them: the server routes a redriven message to the one group it belongs to.
package stream
