package proxy

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/internal/topk"
	"github.com/clusterproxy/clusterproxy/router"
)

// HOTKEYS (Redis 8.6's command, answered by the proxy for the whole
// cluster behind it): START begins a tracking session, in which every
// command with keys adds its time and bytes to per-key top-K sketches;
// STOP ends it, keeping the figures; GET reports them; RESET drops them.
//
// The metrics are what the proxy can see, which differs from a node:
//   - CPU: the time from the command being written to its node to its
//     reply (summed over the parts of a command split by slot), the node's
//     service time as the proxy sees it; not the node's CPU. Blocking
//     commands count no time (waiting is not load).
//   - NET: the bytes of the client's command plus its reply.
//
// A command's figures are shared equally among its keys, as a node does.
// The session is per proxy instance.

// Limits of HOTKEYS START, as a node sets them.
const (
	hotkeysMaxCount    = 64
	hotkeysMaxDuration = 1_000_000 // seconds
	// hotkeysTracked is how many keys the sketches keep per key reported.
	hotkeysTracked = 20
)

// hotKeys is one tracking session, from HOTKEYS START until RESET or the
// next START.
type hotKeys struct {
	start    time.Time
	duration time.Duration // DURATION; 0 runs until STOP
	stopped  atomic.Int64  // when STOP ran (Unix ns); 0 before
	sample   int           // SAMPLE: commands sampled with probability 1/sample
	count    int           // COUNT: keys reported per metric
	// slots are the SLOTS selected (a bit per slot), nil for all; ranges
	// are the same, merged, for the report.
	slots  []uint64
	ranges [][2]int
	cpu    *topk.Sketch // nil when CPU is not tracked
	net    *topk.Sketch // nil when NET is not tracked
	// The proxy's own CPU time when tracking started.
	userCPU, sysCPU time.Duration

	timeAll, netAll         atomic.Uint64 // every command with keys
	timeSel, netSel         atomic.Uint64 // its shares for keys in the selected slots
	timeSampled, netSampled atomic.Uint64 // the same, for sampled commands
	netTracked              atomic.Uint64 // bytes added to the net sketch
}

// activeAt reports whether the session tracks commands read at now.
func (h *hotKeys) activeAt(now time.Time) bool {
	return h.stopped.Load() == 0 && (h.duration == 0 || now.Sub(h.start) < h.duration)
}

// elapsed is the session's length so far: until STOP or the end of its
// DURATION, if either came.
func (h *hotKeys) elapsed(now time.Time) time.Duration {
	end := now
	if ns := h.stopped.Load(); ns != 0 {
		end = time.Unix(0, ns)
	}
	d := end.Sub(h.start)
	if h.duration > 0 && d > h.duration {
		d = h.duration
	}
	return max(d, 0)
}

func (h *hotKeys) selected(slot int) bool {
	return h.slots == nil || h.slots[slot/64]&(1<<(slot%64)) != 0
}

// record adds one command's figures: its keys, whether it was sampled, the
// time its node requests took and its bytes in and out.
func (h *hotKeys) record(keys [][]byte, sampled bool, took time.Duration, bytes uint64) {
	us := uint64(max(took, 0) / time.Microsecond)
	h.timeAll.Add(us)
	h.netAll.Add(bytes)
	n := uint64(len(keys))
	perTime, perBytes := us/n, bytes/n
	for _, k := range keys {
		if h.slots != nil {
			if !h.selected(router.Slot(k)) {
				continue
			}
			h.timeSel.Add(perTime)
			h.netSel.Add(perBytes)
		}
		if !sampled {
			continue
		}
		if h.sample > 1 {
			h.timeSampled.Add(perTime)
			h.netSampled.Add(perBytes)
		}
		if h.cpu != nil {
			h.cpu.Add(k, perTime)
		}
		if h.net != nil {
			h.net.Add(k, perBytes)
			h.netTracked.Add(perBytes)
		}
	}
}

// hotSample marks c, about to be sent to its node(s), for the tracking
// session h when its command has keys (their indexes in args).
func (s *session) hotSample(c *call, h *hotKeys, spec *command.Spec, args [][]byte, keys []int) {
	if len(keys) == 0 || spec.KeysAreChannels() {
		return
	}
	c.hot = h
	c.hotSampled = h.sample <= 1 || rand.IntN(h.sample) == 0
	for _, i := range keys {
		// Sub-slices of the request, valid until it is answered.
		c.hotKeys = append(c.hotKeys, args[i])
	}
}

// nodeTime is how long req took on its node, as the proxy saw it.
func nodeTime(req *router.Request) time.Duration {
	if req.WrittenAt.IsZero() || !req.RepliedAt.After(req.WrittenAt) {
		return 0
	}
	return req.RepliedAt.Sub(req.WrittenAt)
}

// hotkeysSpecs are the HOTKEYS commands, answered by the proxy (they
// replace a Redis 8.6 node's, which would describe one node).
func hotkeysSpecs() []command.Spec {
	admin := []string{"admin", "slow", "dangerous"}
	return []command.Spec{
		{Name: "hotkeys", Arity: -2, Categories: []string{"slow"}},
		{Name: "hotkeys|help", Arity: 2, Flags: command.Loading | command.Stale, Categories: []string{"slow"}},
		{Name: "hotkeys|start", Arity: -2, Flags: command.Admin | command.NoScript, Categories: admin},
		{Name: "hotkeys|stop", Arity: 2, Flags: command.Admin | command.NoScript, Categories: admin},
		{Name: "hotkeys|get", Arity: 2, Flags: command.Admin | command.NoScript, Categories: admin},
		{Name: "hotkeys|reset", Arity: 2, Flags: command.Admin | command.NoScript, Categories: admin},
	}
}

// addHotkeys adds the HOTKEYS commands to the command table (in New,
// before any session looks a command up).
func (s *Server) addHotkeys() {
	for _, spec := range hotkeysSpecs() {
		spec.Policy = command.Local
		s.table.Add(&spec)
	}
}

// hotkeysState is the server's tracking session, guarded for START, STOP
// and RESET; sessions read cur without the lock.
type hotkeysState struct {
	mu  sync.Mutex
	cur atomic.Pointer[hotKeys]
}

// hotkeys answers HOTKEYS HELP, START, STOP, GET and RESET.
func (s *session) hotkeys(c *call, name string, args [][]byte) *call {
	st := &s.srv.hot
	switch name {
	case "hotkeys|help":
		lines := []string{
			"HOTKEYS <subcommand> [<arg> [value] [opt] ...]. Subcommands are (answered by the proxy, for the whole cluster):",
			"START METRICS <count> [CPU] [NET] [COUNT <k>] [DURATION <seconds>] [SAMPLE <ratio>] [SLOTS <count> <slot> ...]",
			"    Start tracking. CPU: time from writing each command to its node to the reply. NET: bytes in and out.",
			"STOP",
			"    Stop tracking; the results stay available to GET.",
			"GET",
			"    The results of the current or last tracking session.",
			"RESET",
			"    Drop the results of a stopped session.",
			"HELP",
			"    Print this help.",
		}
		c.reply = resp.AppendArrayHeader(c.reply, len(lines))
		for _, l := range lines {
			c.reply = resp.AppendSimple(c.reply, l)
		}
		return c
	case "hotkeys|start":
		st.mu.Lock()
		defer st.mu.Unlock()
		if h := st.cur.Load(); h != nil && h.activeAt(time.Now()) {
			return c.fail("ERR hotkey tracking session already in progress")
		}
		h, msg := parseHotkeysStart(args)
		if msg != "" {
			return c.fail("ERR " + msg)
		}
		h.userCPU, h.sysCPU = processCPU()
		h.start = time.Now()
		st.cur.Store(h)
		c.reply = resp.AppendOK(c.reply)
		return c
	case "hotkeys|stop":
		st.mu.Lock()
		defer st.mu.Unlock()
		now := time.Now()
		h := st.cur.Load()
		if h == nil || !h.activeAt(now) {
			c.reply = resp.AppendNull(c.reply, s.proto)
			return c
		}
		h.stopped.Store(now.UnixNano())
		c.reply = resp.AppendOK(c.reply)
		return c
	case "hotkeys|reset":
		st.mu.Lock()
		defer st.mu.Unlock()
		if h := st.cur.Load(); h != nil && h.activeAt(time.Now()) {
			return c.fail("ERR hotkey tracking session in progress, stop tracking first")
		}
		st.cur.Store(nil)
		c.reply = resp.AppendOK(c.reply)
		return c
	case "hotkeys|get":
		h := st.cur.Load()
		if h == nil {
			c.reply = resp.AppendNull(c.reply, s.proto)
			return c
		}
		c.reply = h.appendReport(c.reply, s.proto, time.Now())
		return c
	}
	return c.fail("ERR unknown subcommand '" + strings.TrimPrefix(name, "hotkeys|") + "'. Try HOTKEYS HELP.")
}

// parseHotkeysStart reads HOTKEYS START's arguments, answering a node's
// error messages.
func parseHotkeysStart(args [][]byte) (*hotKeys, string) {
	if len(args) < 4 || !strings.EqualFold(string(args[2]), "metrics") {
		return nil, "METRICS parameter is required"
	}
	n, ok := atoiRange(args[3], 1, 2)
	if !ok {
		return nil, "METRICS count must be > 0 and <= 2"
	}
	h := &hotKeys{sample: 1, count: 10}
	var cpu, net bool
	j, parsed := 4, 0
	for ; j < len(args) && parsed < n; j, parsed = j+1, parsed+1 {
		switch strings.ToLower(string(args[j])) {
		case "cpu":
			if cpu {
				return nil, "METRICS CPU defined more than once!"
			}
			cpu = true
		case "net":
			if net {
				return nil, "METRICS NET defined more than once!"
			}
			net = true
		}
	}
	if parsed != n {
		return nil, "METRICS count does not match number of metric types provided"
	}
	if !cpu && !net {
		return nil, "METRICS no valid metrics passed. Supported: CPU|NET"
	}
	for j < len(args) {
		more := j+1 < len(args)
		opt := strings.ToLower(string(args[j]))
		switch {
		case more && opt == "count":
			v, ok := atoiRange(args[j+1], 1, hotkeysMaxCount)
			if !ok {
				return nil, "COUNT must be between 1 and " + strconv.Itoa(hotkeysMaxCount)
			}
			h.count = v
			j += 2
		case more && opt == "duration":
			v, ok := atoiRange(args[j+1], 1, hotkeysMaxDuration)
			if !ok {
				return nil, "DURATION must be between 1 and " + strconv.Itoa(hotkeysMaxDuration)
			}
			h.duration = time.Duration(v) * time.Second
			j += 2
		case more && opt == "sample":
			v, ok := atoiRange(args[j+1], 1, 1<<31-1)
			if !ok {
				return nil, "SAMPLE ratio must be positive"
			}
			h.sample = v
			j += 2
		case more && opt == "slots":
			if h.slots != nil {
				return nil, "SLOTS parameter already specified"
			}
			v, ok := atoiRange(args[j+1], 1, router.SlotCount)
			if !ok {
				return nil, "SLOTS count must be between 1 and " + strconv.Itoa(router.SlotCount)
			}
			if j+1+v >= len(args) {
				return nil, "not enough slot numbers provided"
			}
			list := make([]int, v)
			for i := range list {
				sl, ok := atoiRange(args[j+2+i], 0, router.SlotCount-1)
				if !ok {
					return nil, "Invalid or out of range slot"
				}
				list[i] = sl
			}
			slices.Sort(list)
			h.slots = make([]uint64, router.SlotCount/64)
			for i, sl := range list {
				if i > 0 && sl == list[i-1] {
					return nil, "duplicate slot number"
				}
				h.slots[sl/64] |= 1 << (sl % 64)
				if k := len(h.ranges); k > 0 && h.ranges[k-1][1] == sl-1 {
					h.ranges[k-1][1] = sl
				} else {
					h.ranges = append(h.ranges, [2]int{sl, sl})
				}
			}
			j += 2 + v
		default:
			return nil, "syntax error"
		}
	}
	if cpu {
		h.cpu = topk.New(h.count * hotkeysTracked)
	}
	if net {
		h.net = topk.New(h.count * hotkeysTracked)
	}
	return h, ""
}

// atoiRange parses a decimal integer within [lo, hi].
func atoiRange(b []byte, lo, hi int) (int, bool) {
	v, ok := resp.ParseInt(b)
	if !ok || v < int64(lo) || v > int64(hi) {
		return 0, false
	}
	return int(v), true
}

// processCPU is the proxy's user and system CPU time so far.
func processCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// appendReport appends HOTKEYS GET's reply: an array holding one map, in
// a node's field order.
func (h *hotKeys) appendReport(b []byte, proto int, now time.Time) []byte {
	type field struct {
		name string
		v    int64
	}
	sel, sampled := h.slots != nil, h.sample > 1
	n := 7
	if sel {
		n += 2
		if sampled {
			n += 2
		}
	}
	if h.cpu != nil {
		n += 3
	}
	if h.net != nil {
		n += 2
	}
	b = resp.AppendArrayHeader(b, 1)
	b = resp.AppendMapHeader(b, n, proto)
	ints := func(b []byte, fs ...field) []byte {
		for _, f := range fs {
			b = resp.AppendBulkString(b, f.name)
			b = resp.AppendInt(b, f.v)
		}
		return b
	}
	active := int64(0)
	if h.activeAt(now) {
		active = 1
	}
	b = ints(b, field{"tracking-active", active}, field{"sample-ratio", int64(h.sample)})
	b = resp.AppendBulkString(b, "selected-slots")
	ranges := h.ranges
	if !sel {
		ranges = [][2]int{{0, router.SlotCount - 1}} // the proxy serves every slot
	}
	b = resp.AppendArrayHeader(b, len(ranges))
	for _, r := range ranges {
		if r[0] == r[1] {
			b = resp.AppendArrayHeader(b, 1)
			b = resp.AppendInt(b, int64(r[0]))
			continue
		}
		b = resp.AppendArrayHeader(b, 2)
		b = resp.AppendInt(b, int64(r[0]))
		b = resp.AppendInt(b, int64(r[1]))
	}
	if sel && sampled {
		b = ints(b, field{"sampled-commands-selected-slots-us", int64(h.timeSampled.Load())})
	}
	if sel {
		b = ints(b, field{"all-commands-selected-slots-us", int64(h.timeSel.Load())})
	}
	b = ints(b, field{"all-commands-all-slots-us", int64(h.timeAll.Load())})
	if sel && sampled {
		b = ints(b, field{"net-bytes-sampled-commands-selected-slots", int64(h.netSampled.Load())})
	}
	if sel {
		b = ints(b, field{"net-bytes-all-commands-selected-slots", int64(h.netSel.Load())})
	}
	b = ints(b, field{"net-bytes-all-commands-all-slots", int64(h.netAll.Load())},
		field{"collection-start-time-unix-ms", h.start.UnixMilli()},
		field{"collection-duration-ms", h.elapsed(now).Milliseconds()})
	if h.cpu != nil {
		user, sys := processCPU()
		b = ints(b, field{"total-cpu-time-user-ms", (user - h.userCPU).Milliseconds()},
			field{"total-cpu-time-sys-ms", (sys - h.sysCPU).Milliseconds()})
	}
	if h.net != nil {
		b = ints(b, field{"total-net-bytes", int64(h.netTracked.Load())})
	}
	list := func(b []byte, name string, sk *topk.Sketch) []byte {
		top := sk.Top(h.count)
		b = resp.AppendBulkString(b, name)
		b = resp.AppendArrayHeader(b, 2*len(top))
		for _, it := range top {
			b = resp.AppendBulkString(b, it.Key)
			b = resp.AppendInt(b, int64(it.Count-it.Err)) // guaranteed: never more than the key had
		}
		return b
	}
	if h.cpu != nil {
		b = list(b, "by-cpu-time-us", h.cpu)
	}
	if h.net != nil {
		b = list(b, "by-net-bytes", h.net)
	}
	return b
}
