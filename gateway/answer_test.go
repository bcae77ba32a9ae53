package gateway

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// Accepted is the 200 answer's body as the docs state it; the gateway's
// own tests (package gateway_test) decode answers into it too.
type Accepted struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Subject   string `json:"subject"`
	ID        string `json:"id"`
}

// The 200 answer, written by hand, is what encoding/json would write.
func TestAcceptedAnswerMatchesEncodingJSON(t *testing.T) {
	for _, id := range []string{"msg_2Xb", `a"b\c`, "<script>&", "~!@#$%^*()_+{}|:?"} {
		for _, dup := range []bool{false, true} {
			ack := &jetstream.PubAck{Stream: "SPECTORA", Sequence: 18446744073709551615, Duplicate: dup}
			want, _ := json.Marshal(Accepted{ack.Stream, ack.Sequence, ack.Duplicate, "spectora.inspection.confirmed", id})
			if got := appendAccepted(nil, ack, "spectora.inspection.confirmed", id); string(got) != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		}
	}
}
