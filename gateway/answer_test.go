package gateway

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// The 200 answer, written by hand, is what encoding/json would write.
func TestAcceptedAnswerMatchesEncodingJSON(t *testing.T) {
	type accepted struct {
		Stream    string `json:"stream"`
		Sequence  uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
		Subject   string `json:"subject"`
		ID        string `json:"id"`
	}
	for _, id := range []string{"msg_2Xb", `a"b\c`, "<script>&", "~!@#$%^*()_+{}|:?"} {
		for _, dup := range []bool{false, true} {
			ack := &jetstream.PubAck{Stream: "SPECTORA", Sequence: 18446744073709551615, Duplicate: dup}
			want, _ := json.Marshal(accepted{ack.Stream, ack.Sequence, ack.Duplicate, "spectora.inspection.confirmed", id})
			if got := appendAccepted(nil, ack, "spectora.inspection.confirmed", id); string(got) != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		}
	}
}
