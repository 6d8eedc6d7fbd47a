package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// drainWait bounds how long a pubsub round waits, after the last PUBLISH,
// for subscribers to receive what is still in flight.
const drainWait = 3 * time.Second

// PubSub is the fan-out scenario: cfg.Subs subscribers each subscribe to
// all cfg.Channels channels; cfg.Pubs publishers PUBLISH (pipelined by
// cfg.Pipeline) to the channels in turn. Every payload starts with its send
// time, so subscribers measure delivery latency. An operation is one
// delivered message; the budget counts published messages. Against a
// cluster reached directly, subscribers and publishers spread over the
// masters (a cluster broadcasts PUBLISH to every node).
type PubSub struct{}

// Name returns "pubsub".
func (PubSub) Name() string { return "pubsub" }

// Check accepts every target.
func (PubSub) Check(context.Context, *Target, Config) error { return nil }

// Run runs one round.
func (PubSub) Run(ctx context.Context, t *Target, cfg Config, bud Budget, live *Live) (Round, error) {
	channels := make([][]byte, cfg.Channels)
	for i := range channels {
		channels[i] = []byte(cfg.Prefix + "chan:" + strconv.Itoa(i))
	}
	var all []*conn
	var mu sync.Mutex
	track := func(c *conn) {
		mu.Lock()
		all = append(all, c)
		mu.Unlock()
	}
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range all {
			c.close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
	}()

	// Subscribers first, each confirmed for every channel.
	subs := make([]*conn, cfg.Subs)
	for i := range subs {
		c, err := dial(ctx, t.anyAddr(i))
		if err != nil {
			return Round{}, err
		}
		track(c)
		args := append([][]byte{[]byte("SUBSCRIBE")}, channels...)
		c.wbuf = appendCommand(c.wbuf[:0], args...)
		if _, err := c.nc.Write(c.wbuf); err != nil {
			return Round{}, fmt.Errorf("load: subscribe on %s: %w", c.addr, err)
		}
		for range channels {
			f, err := c.rd.ReadReply()
			if err != nil {
				return Round{}, fmt.Errorf("load: subscribe on %s: %w", c.addr, err)
			}
			if err := replyError(f); err != nil {
				return Round{}, fmt.Errorf("load: subscribe on %s: %w", c.addr, err)
			}
		}
		subs[i] = c
	}
	pubs := make([]*conn, cfg.Pubs)
	for i := range pubs {
		c, err := dial(ctx, t.anyAddr(i))
		if err != nil {
			return Round{}, err
		}
		track(c)
		pubs[i] = c
	}

	base := time.Now()
	sig := histSigFigs(cfg.Subs)
	var delivered atomic.Int64
	var subWG sync.WaitGroup
	hists := make([]*stats.Hist, len(subs))
	last := make([]time.Duration, len(subs))
	subErrs := make([]error, len(subs))
	stopSubs := make(chan struct{})
	for i, c := range subs {
		hists[i] = stats.NewHist(sig)
		subWG.Go(func() {
			var el [][]byte
			for {
				f, err := c.rd.ReadReply()
				if err != nil {
					select {
					case <-stopSubs:
					default:
						if ctx.Err() == nil {
							subErrs[i] = fmt.Errorf("load: subscriber on %s: %w", c.addr, err)
						}
					}
					return
				}
				now := time.Since(base)
				el, _, err = resp.Elements(f, el[:0])
				if err != nil || len(el) != 3 {
					subErrs[i] = fmt.Errorf("load: subscriber on %s: unexpected frame %q", c.addr, f)
					return
				}
				payload, _ := resp.BulkValue(el[2])
				sent, ok := sentAt(payload)
				if !ok {
					subErrs[i] = fmt.Errorf("load: subscriber on %s: payload without timestamp", c.addr)
					return
				}
				hists[i].Record(now - sent)
				last[i] = now
				delivered.Add(1)
				live.Ops.Add(1)
			}
		})
	}

	bg := newBudget(bud)
	var published atomic.Int64
	var errs errorSink
	var errMu sync.Mutex
	pubErrs := make([]error, len(pubs))
	var pubWG sync.WaitGroup
	pubStart := time.Now()
	for i, c := range pubs {
		pubWG.Go(func() {
			payload := make([]byte, 0, cfg.Size+24)
			var buf []byte
			next := i
			for {
				n := bg.take(cfg.Pipeline)
				if n == 0 {
					return
				}
				buf = buf[:0]
				for range n {
					payload = strconv.AppendInt(payload[:0], int64(time.Since(base)), 10)
					payload = append(payload, ':')
					for len(payload) < cfg.Size {
						payload = append(payload, 'x')
					}
					buf = appendCommand(buf, []byte("PUBLISH"), channels[next%len(channels)], payload)
					next++
				}
				if _, err := c.nc.Write(buf); err != nil {
					pubErrs[i] = fmt.Errorf("load: publish to %s: %w", c.addr, err)
					return
				}
				for range n {
					f, err := c.rd.ReadReply()
					if err != nil {
						pubErrs[i] = fmt.Errorf("load: publish to %s: %w", c.addr, err)
						return
					}
					if resp.IsError(f) {
						errMu.Lock()
						errs.add(f)
						errMu.Unlock()
						live.Errors.Add(1)
					} else {
						published.Add(1)
					}
				}
			}
		})
	}
	pubWG.Wait()
	pubElapsed := time.Since(pubStart)
	want := published.Load() * int64(len(subs))
	deadline := time.Now().Add(drainWait)
	for delivered.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	close(stopSubs)
	for _, c := range subs {
		c.close()
	}
	subWG.Wait()

	r := Round{Latency: stats.NewHist(sig), Errors: errs.n, FirstError: errs.first}
	var end time.Duration
	for i := range subs {
		r.Latency.Merge(hists[i])
		end = max(end, last[i])
	}
	r.Ops = r.Latency.Count()
	r.Elapsed = max(end-pubStart.Sub(base), pubElapsed)
	lost := want - r.Ops
	r.Extra = map[string]float64{
		"published":         float64(published.Load()),
		"published_per_sec": stats.Rate(published.Load(), pubElapsed),
		"fanout":            float64(len(subs)),
		"lost":              float64(lost),
	}
	if lost > 0 {
		r.Errors += lost
		if r.FirstError == "" {
			r.FirstError = fmt.Sprintf("%d messages not delivered within %s", lost, drainWait)
		}
	}
	if err := errors.Join(append(pubErrs, subErrs...)...); err != nil {
		return r, err
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("load: round against %s interrupted: %w", t.Name, err)
	}
	return r, nil
}

// sentAt parses the send time (nanoseconds since the round's base) at the
// start of a payload "<ns>:xxxx".
func sentAt(p []byte) (time.Duration, bool) {
	i := bytes.IndexByte(p, ':')
	if i <= 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p[:i]), 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(n), true
}
