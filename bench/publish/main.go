// Command publish measures what storing one message costs the client and the
// nats-server, published the gateway's way (one async publish and one PubAck
// per message, 64 callers each waiting for its own) or as JetStream atomic
// batches of whatever the callers have waiting (one PubAck per batch), the
// only protocol that would take round trips off the gateway's path.
// scripts/bench-publish runs both against one nats-server; the numbers are
// in docs/performance.md.
//
//	publish -mode individual|atomic -url nats://127.0.0.1:4290 -serverpid PID
//
// It creates (and first deletes) stream P on p.> with file storage and a 24 h
// duplicate window, like the gateway's stream.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

type req struct {
	msg  *nats.Msg
	done chan error
}

func cpuSelf() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func cpuPid(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	u, _ := strconv.ParseFloat(f[13], 64)
	s, _ := strconv.ParseFloat(f[14], 64)
	return (u + s) / 100
}

func main() {
	mode := flag.String("mode", "individual", "individual or atomic")
	n := flag.Int("n", 192000, "messages")
	c := flag.Int("c", 64, "concurrent callers")
	size := flag.Int("size", 600, "payload bytes (a 512-byte webhook in its envelope)")
	url := flag.String("url", "nats://127.0.0.1:4290", "NATS server")
	pid := flag.Int("serverpid", 0, "the nats-server's process ID, to read its CPU time")
	maxBatch := flag.Int("batch", 64, "most messages in one atomic batch")
	inflight := flag.Int("inflight", 4, "atomic batches in flight at once")
	flag.Parse()
	nc, err := nats.Connect(*url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	_ = js.DeleteStream(ctx, "P")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, Storage: jetstream.FileStorage,
		Duplicates: 24 * time.Hour, AllowAtomicPublish: *mode == "atomic"}); err != nil {
		log.Fatal(err)
	}
	payload := make([]byte, *size)
	in := make(chan req, 1024)
	sem := make(chan struct{}, *inflight)
	if *mode == "atomic" {
		go func() {
			for first := range in {
				batch := []req{first}
			more:
				for len(batch) < *maxBatch {
					select {
					case r := <-in:
						batch = append(batch, r)
					default:
						break more
					}
				}
				sem <- struct{}{}
				var fut jetstream.PubAckFuture
				var err error
				if len(batch) == 1 {
					fut, err = js.PublishMsgAsync(batch[0].msg)
				} else {
					id := nuid.Next()
					for i, r := range batch {
						r.msg.Header.Set("Nats-Batch-Id", id)
						r.msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
						if i == len(batch)-1 {
							r.msg.Header.Set("Nats-Batch-Commit", "1")
							fut, err = js.PublishMsgAsync(r.msg)
						} else if perr := nc.PublishMsg(r.msg); perr != nil {
							err = perr
						}
					}
				}
				go func(batch []req, fut jetstream.PubAckFuture, err error) {
					defer func() { <-sem }()
					if err == nil {
						select {
						case <-fut.Ok():
						case err = <-fut.Err():
						}
					}
					for _, r := range batch {
						r.done <- err
					}
				}(batch, fut, err)
			}
		}()
	}
	var wg sync.WaitGroup
	per := *n / *c
	start, cpu0, scpu0 := time.Now(), cpuSelf(), cpuPid(*pid)
	var errs sync.Map
	for w := range *c {
		wg.Go(func() {
			done := make(chan error, 1)
			for i := range per {
				m := nats.NewMsg(fmt.Sprintf("p.inspection.%d", i%7))
				m.Data = payload
				m.Header.Set("Nats-Msg-Id", fmt.Sprintf("w%d-%d", w, i))
				m.Header.Set("Content-Type", "application/protobuf")
				if *mode == "atomic" {
					in <- req{msg: m, done: done}
					if err := <-done; err != nil {
						errs.Store(err.Error(), true)
					}
					continue
				}
				fut, err := js.PublishMsgAsync(m)
				if err == nil {
					select {
					case <-fut.Ok():
					case err = <-fut.Err():
					}
				}
				if err != nil {
					errs.Store(err.Error(), true)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	total := per * *c
	fmt.Printf("%-10s %8.0f msg/s  client CPU %5.1f µs/msg  nats-server CPU %5.1f µs/msg\n", *mode, float64(total)/el.Seconds(),
		(cpuSelf()-cpu0)*1e6/float64(total), (cpuPid(*pid)-scpu0)*1e6/float64(total))
	errs.Range(func(k, _ any) bool { fmt.Println("error:", k); return true })
	if st, err := js.Stream(ctx, "P"); err == nil && st.CachedInfo().State.Msgs != uint64(total) {
		log.Fatalf("stored %d messages of %d", st.CachedInfo().State.Msgs, total)
	}
}
