// Package natsx holds the NATS plumbing shared by the gateway and the consumers:
// the embedded JetStream server used when NATS_URL is unset, connecting to an
// external server or cluster, and idempotent stream provisioning.
package natsx
