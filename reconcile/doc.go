// Package reconcile recovers Spectora changes that never arrived as webhooks:
// Svix gives up on a delivery after about 27 hours, Spectora's quick publish
// sends no inspection.published, an endpoint disabled after a long outage
// receives nothing. A Reconciler pages through each company's records changed
// since a checkpoint, compares each record's version with the last one the
// system saw (enrich.Versions, written by the enricher), and publishes every
// change nobody announced as a synthetic event on spectora.<resource>.reconciled
// in the raw stream, with the header Spectora-Origin: reconcile, the record it
// listed (so the enricher doesn't fetch it again) and a message ID derived
// from source, resource, record ID and version, so reruns and concurrent
// instances store it once.
//
// Optional rules turn a state the list shows into the event Spectora should
// have sent (e.g. inspection.published once attributes.published_at is set):
// guesses about Spectora's payload, off unless configured.
//
// Deletions can't be seen in a list of changed records; they are not
// recovered.
package reconcile
