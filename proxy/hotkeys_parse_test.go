package proxy

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// FuzzHotkeysStart: any HOTKEYS START arguments either answer an error or
// give a session within the limits whose slot ranges match its slot set,
// and whose report, after some commands, is well-formed RESP in both
// protocols.
//
//	go test -run '^$' -fuzz '^FuzzHotkeysStart$' -fuzztime 60s ./proxy/
func FuzzHotkeysStart(f *testing.F) {
	for _, s := range []string{
		"METRICS 2 CPU NET",
		"METRICS 1 NET COUNT 64 DURATION 1000000 SAMPLE 2147483647",
		"METRICS 1 CPU SLOTS 3 5 4 16383",
		"METRICS 1 NET SLOTS 2 1 1",
		"METRICS 2 NET NET",
		"METRICS 1 cpu count 0",
		"METRICS 3 CPU NET DISK",
		"metrics 1 net slots 16384",
		"METRICS 1 NET SLOTS -1 0",
		"METRICS 1 NET SAMPLE 1 SAMPLE 3 COUNT 1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		args := [][]byte{[]byte("hotkeys"), []byte("start")}
		for _, a := range bytes.Fields([]byte(in)) {
			args = append(args, a)
		}
		h, msg := parseHotkeysStart(args)
		if msg != "" {
			if h != nil {
				t.Fatalf("%q: error %q with a session", in, msg)
			}
			return
		}
		if h.count < 1 || h.count > hotkeysMaxCount || h.sample < 1 || (h.cpu == nil && h.net == nil) {
			t.Fatalf("%q: count %d, sample %d, cpu %v, net %v", in, h.count, h.sample, h.cpu != nil, h.net != nil)
		}
		if h.slots != nil {
			var fromRanges []int
			for i, r := range h.ranges {
				if r[0] > r[1] || (i > 0 && r[0] <= h.ranges[i-1][1]+1) {
					t.Fatalf("%q: ranges %v not sorted, disjoint and merged", in, h.ranges)
				}
				for sl := r[0]; sl <= r[1]; sl++ {
					fromRanges = append(fromRanges, sl)
				}
			}
			var fromBits []int
			for sl := range router.SlotCount {
				if h.selected(sl) {
					fromBits = append(fromBits, sl)
				}
			}
			if !slices.Equal(fromRanges, fromBits) {
				t.Fatalf("%q: ranges %v, bits %v", in, h.ranges, fromBits)
			}
		}
		h.start = time.Now()
		for i, k := range []string{"a", "b", "{a}c", in} {
			h.record([][]byte{[]byte(k), []byte("x")}, i%2 == 0, time.Duration(i)*time.Millisecond, uint64(100*i))
		}
		for _, proto := range []int{resp.RESP2, resp.RESP3} {
			rep := h.appendReport(nil, proto, time.Now())
			rd := resp.NewReplyReader(bytes.NewReader(rep), resp.Limits{})
			frame, err := rd.ReadReply()
			if err != nil || len(frame) != len(rep) {
				t.Fatalf("%q: report (RESP%d) %q: %v (read %d of %d bytes)", in, proto, rep, err, len(frame), len(rep))
			}
		}
	})
}
