package resp

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"strings"
	"testing"
)

// chunkReader returns its data in chunks of the given sizes (cycling), so a
// frame arrives split at arbitrary points.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = c.sizes[c.i%len(c.sizes)]
		c.i++
		if n <= 0 {
			n = 1
		}
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

type cmdResult struct {
	raws []string
	args [][]string
	err  string
}

func readAllCommands(rd io.Reader, lim Limits) cmdResult {
	r := NewReader(rd, lim)
	var res cmdResult
	var kept []Command
	for {
		c, err := r.ReadCommand()
		if err != nil {
			if err != io.EOF {
				res.err = err.Error()
			}
			break
		}
		kept = append(kept, Command{Raw: c.Raw})
		var a []string
		for _, x := range c.Args {
			a = append(a, string(x))
		}
		res.args = append(res.args, a)
	}
	// Raw frames must still be intact after every later read (stability).
	for _, k := range kept {
		res.raws = append(res.raws, string(k.Raw))
	}
	return res
}

func TestReadCommandMultibulk(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n*1\r\n$4\r\nPING\r\n"
	for _, sizes := range [][]int{nil, {1}, {2, 3}, {7}} {
		res := readAllCommands(&chunkReader{data: []byte(in), sizes: sizes}, Limits{BufferSize: 16})
		if res.err != "" {
			t.Fatalf("sizes %v: %v", sizes, res.err)
		}
		want := [][]string{{"SET", "key", "va\r\nl"}, {"PING"}}
		if len(res.args) != 2 || strings.Join(res.args[0], "|") != strings.Join(want[0], "|") || res.args[1][0] != "PING" {
			t.Fatalf("sizes %v: got %q", sizes, res.args)
		}
		if cut := strings.Index(in, "*1\r\n"); res.raws[0] != in[:cut] || res.raws[1] != in[cut:] {
			t.Fatalf("sizes %v: raw %q", sizes, res.raws)
		}
	}
}

func TestReadCommandInline(t *testing.T) {
	in := "set k \"a b\\x41\\n\" 'it\\'s'\r\n\r\nPING\n"
	res := readAllCommands(strings.NewReader(in), Limits{})
	if res.err != "" {
		t.Fatal(res.err)
	}
	if len(res.args) != 2 || len(res.args[0]) != 4 || res.args[0][2] != "a bA\n" || res.args[0][3] != "it's" || res.args[1][0] != "PING" {
		t.Fatalf("got %q", res.args)
	}
	if res.raws[1] != "*1\r\n$4\r\nPING\r\n" {
		t.Fatalf("inline not re-encoded: %q", res.raws[1])
	}
}

func TestReadCommandErrors(t *testing.T) {
	cases := map[string]string{
		"*2\r\n$3\r\nGET\r\n:1\r\n":             "expected '$', got ':'",
		"*1\r\n$-5\r\n":                         "invalid bulk length",
		"*1\r\n$1099511627776\r\n":              "invalid bulk length", // 2^40, refused before allocating
		"*x\r\n":                                "invalid multibulk length",
		"*2000000\r\n":                          "invalid multibulk length",
		"*1\r\n$3\r\nGETX\r\n":                  "bulk string not terminated by CRLF",
		"set \"abc\r\n":                         "unbalanced quotes",
		"*1\r\n$3" + strings.Repeat("1", 70000): "too big bulk count string",
		strings.Repeat("a", 70000):              "too big inline request",
	}
	for in, want := range cases {
		res := readAllCommands(strings.NewReader(in), Limits{})
		if !strings.Contains(res.err, want) || !strings.HasPrefix(res.err, "Protocol error: ") {
			t.Errorf("%.30q: got error %q, want %q", in, res.err, want)
		}
	}
	// A truncated stream is not a clean EOF.
	r := NewReader(strings.NewReader("*2\r\n$3\r\nGET\r\n"), Limits{})
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestReadCommandEmptyIgnored(t *testing.T) {
	res := readAllCommands(strings.NewReader("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"), Limits{})
	if res.err != "" || len(res.args) != 1 || res.args[0][0] != "PING" {
		t.Fatalf("%+v", res)
	}
}

func TestReadCommandLargeBulkSizedOnce(t *testing.T) {
	val := bytes.Repeat([]byte("v"), 1<<20)
	in := AppendCommand(nil, []byte("SET"), []byte("k"), val)
	r := NewReader(&chunkReader{data: in, sizes: []int{4096}}, Limits{})
	c, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Args[2], val) || !bytes.Equal(c.Raw, in) {
		t.Fatal("large bulk mismatch")
	}
}

// TestReadCommandLimitErrors: an input over a limit is refused with an
// error that names the limit.
func TestReadCommandLimitErrors(t *testing.T) {
	lim := Limits{MaxBulk: 1024, MaxElements: 8, MaxInline: 100}
	cases := map[string]string{
		"*1\r\n$2048\r\n":                 "invalid bulk length: 2048 bytes is over the limit of 1024 bytes (max-bulk)",
		"*1\r\n$1099511627776\r\n":        "invalid bulk length: 1099511627776 bytes is over the limit of 1024 bytes (max-bulk)",
		"*9\r\n":                          "invalid multibulk length: 9 arguments is over the limit of 8 (max-args)",
		"a b c d e f g h i\r\n":           "invalid multibulk length: 9 arguments is over the limit of 8 (max-args)",
		strings.Repeat("a", 200):          "too big inline request: over the limit of 100 bytes",
		strings.Repeat("a", 200) + "\r\n": "too big inline request: over the limit of 100 bytes",
		"*1\r\n$1024\r\n" + strings.Repeat("v", 1024) + "\r\n*1\r\n$1025\r\n": "1025 bytes is over the limit",
	}
	for in, want := range cases {
		res := readAllCommands(strings.NewReader(in), lim)
		if res.err != "Protocol error: "+want && !strings.Contains(res.err, want) {
			t.Errorf("%.30q: got error %q, want %q", in, res.err, want)
		}
	}
}

// TestLineLimitBoundary: a protocol line of exactly MaxInline bytes before
// its CRLF is read, one byte longer is refused, and the verdict does not
// depend on how the bytes arrive (whole, or one byte per read, when the
// '\r' is buffered before the '\n').
func TestLineLimitBoundary(t *testing.T) {
	lim := Limits{BufferSize: 32, MaxInline: 100}
	for _, tc := range []struct {
		in      string
		reply   bool
		wantErr string // "" when the frame must be read whole
	}{
		{"+" + strings.Repeat("s", 99) + "\r\n", true, ""},
		{"+" + strings.Repeat("s", 100) + "\r\n", true, "too big inline request"},
		{"+" + strings.Repeat("s", 100) + "\n", true, "expected CRLF line terminator"},
		// 100 bytes: within the limit, refused for what it says.
		{"*1\r\n$" + strings.Repeat("0", 98) + "3\r\nabc\r\n", false, "invalid bulk length"},
		{"*1\r\n$" + strings.Repeat("0", 99) + "3\r\nabc\r\n", false, "too big bulk count string"},
	} {
		for _, sizes := range [][]int{nil, {1}} {
			rd := func() io.Reader { return &chunkReader{data: []byte(tc.in), sizes: sizes} }
			var frames []string
			var errText string
			if tc.reply {
				frames, errText = readAllReplies(rd(), lim)
			} else {
				res := readAllCommands(rd(), lim)
				frames, errText = res.raws, res.err
			}
			if tc.wantErr == "" {
				if errText != "" || len(frames) != 1 || frames[0] != tc.in {
					t.Errorf("%.20q... in reads of %v: frames %d, error %q; want it read whole", tc.in, sizes, len(frames), errText)
				}
			} else if !strings.Contains(errText, tc.wantErr) {
				t.Errorf("%.20q... in reads of %v: error %q, want %q", tc.in, sizes, errText, tc.wantErr)
			}
		}
	}
}

// TestReadCommandAnnouncedBulkNotPresized: a header announcing a bulk as
// large as MaxBulk allocates at most commandPresize before the bytes
// arrive, and a large bulk that does arrive grows the buffer geometrically.
func TestReadCommandAnnouncedBulkNotPresized(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n0123456789"
	r := NewReader(&chunkReader{data: []byte(in)}, Limits{})
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	if len(r.buf) > commandPresize+minRead {
		t.Fatalf("buffer of %d bytes for a header and 10 bytes", len(r.buf))
	}

	val := bytes.Repeat([]byte("v"), 8<<20)
	frame := AppendCommand(nil, []byte("SET"), []byte("k"), val)
	r = NewReader(&chunkReader{data: frame, sizes: []int{16 << 10}}, Limits{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := r.ReadCommand()
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(c.Raw, frame) {
		t.Fatalf("large bulk mismatch: %v", err)
	}
	if total := after.TotalAlloc - before.TotalAlloc; total > 5*uint64(len(frame)) {
		t.Fatalf("%d bytes allocated to read a frame of %d", total, len(frame))
	}
}

const replies = "+OK\r\n-ERR x\r\n:12\r\n$-1\r\n$3\r\nabc\r\n*-1\r\n*0\r\n*2\r\n*1\r\n:1\r\n$1\r\na\r\n" +
	"_\r\n,1.5\r\n#t\r\n(123\r\n!3\r\nerr\r\n=7\r\ntxt:abc\r\n%1\r\n+k\r\n*1\r\n:1\r\n~2\r\n:1\r\n:2\r\n" +
	">2\r\n+message\r\n+x\r\n|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n"

func readAllReplies(rd io.Reader, lim Limits) ([]string, string) {
	r := NewReplyReader(rd, lim)
	var frames [][]byte
	errText := ""
	for {
		f, err := r.ReadReply()
		if err != nil {
			if err != io.EOF {
				errText = err.Error()
			}
			break
		}
		frames = append(frames, f)
	}
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = string(f)
	}
	return out, errText
}

func TestReadReplyAllTypes(t *testing.T) {
	want := []string{"+OK\r\n", "-ERR x\r\n", ":12\r\n", "$-1\r\n", "$3\r\nabc\r\n", "*-1\r\n", "*0\r\n",
		"*2\r\n*1\r\n:1\r\n$1\r\na\r\n", "_\r\n", ",1.5\r\n", "#t\r\n", "(123\r\n", "!3\r\nerr\r\n",
		"=7\r\ntxt:abc\r\n", "%1\r\n+k\r\n*1\r\n:1\r\n", "~2\r\n:1\r\n:2\r\n", ">2\r\n+message\r\n+x\r\n",
		"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n"}
	for _, sizes := range [][]int{nil, {1}, {3, 5}} {
		got, errText := readAllReplies(&chunkReader{data: []byte(replies), sizes: sizes}, Limits{BufferSize: 8})
		if errText != "" {
			t.Fatalf("sizes %v: %s", sizes, errText)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("sizes %v:\n got %q\nwant %q", sizes, got, want)
		}
	}
}

func TestReadReplyLimits(t *testing.T) {
	deep := strings.Repeat("*1\r\n", 100) + ":1\r\n"
	if _, e := readAllReplies(strings.NewReader(deep), Limits{}); !strings.Contains(e, "nesting") {
		t.Fatalf("deep: %q", e)
	}
	if _, e := readAllReplies(strings.NewReader("$1099511627776\r\n"), Limits{}); !strings.Contains(e, "bulk length") {
		t.Fatalf("huge bulk: %q", e)
	}
	if _, e := readAllReplies(strings.NewReader("?x\r\n"), Limits{}); !strings.Contains(e, "invalid reply type") {
		t.Fatalf("bad type: %q", e)
	}
}

func TestElements(t *testing.T) {
	els, null, err := Elements([]byte("*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:2\r\n"), nil)
	if err != nil || null || len(els) != 3 || string(els[2]) != "*1\r\n:2\r\n" || string(els[1]) != "$-1\r\n" {
		t.Fatalf("%q %v %v", els, null, err)
	}
	if _, null, _ := Elements([]byte("*-1\r\n"), nil); !null {
		t.Fatal("null array")
	}
	if v, ok := BulkValue(els[0]); !ok || string(v) != "a" {
		t.Fatal("bulk value")
	}
	if n, ok := IntValue([]byte(":-42\r\n")); !ok || n != -42 {
		t.Fatal("int value")
	}
	if string(ErrorText([]byte("-MOVED 1 h:1\r\n"))) != "MOVED 1 h:1" || string(ErrorText([]byte("!3\r\nerr\r\n"))) != "err" {
		t.Fatal("error text")
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "-1": -1, "9223372036854775807": 1<<63 - 1, "-9223372036854775808": -1 << 63} {
		if n, ok := parseInt([]byte(in)); !ok || n != want {
			t.Errorf("%s: %d %v", in, n, ok)
		}
	}
	// 20-digit values whose multiplication would wrap a uint64 included.
	for _, in := range []string{"", "-", "+1", "1 ", "9223372036854775808", "99999999999999999999", "1a",
		"18446744073709551616", "18446744073709551617", "-9223372036854775809", "-99999999999999999999"} {
		if _, ok := parseInt([]byte(in)); ok {
			t.Errorf("%q accepted", in)
		}
	}
}

// FuzzReadCommand checks that any input gives the same commands and error
// whether it arrives whole, in two halves, or in random chunks; and never
// panics.
func FuzzReadCommand(f *testing.F) {
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n"), uint8(3), int64(1))
	f.Add([]byte("GET \"a\\x41\" 'b'\r\nPING\n"), uint8(1), int64(2))
	f.Add([]byte("*1\r\n$1099511627776\r\n"), uint8(2), int64(3))
	f.Add([]byte("*0\r\n*-1\r\n\r\n"), uint8(5), int64(4))
	f.Fuzz(func(t *testing.T, data []byte, split uint8, seed int64) {
		lim := Limits{BufferSize: 32, MaxInline: 256, MaxBulk: 4096, MaxElements: 64}
		whole := readAllCommands(bytes.NewReader(data), lim)
		cut := int(split) % (len(data) + 1)
		halves := readAllCommands(io.MultiReader(bytes.NewReader(data[:cut]), bytes.NewReader(data[cut:])), lim)
		rnd := rand.New(rand.NewSource(seed))
		sizes := make([]int, 16)
		for i := range sizes {
			sizes[i] = 1 + rnd.Intn(40)
		}
		chunks := readAllCommands(&chunkReader{data: data, sizes: sizes}, lim)
		for name, got := range map[string]cmdResult{"halves": halves, "chunks": chunks} {
			if got.err != whole.err || strings.Join(got.raws, "\x00") != strings.Join(whole.raws, "\x00") ||
				len(got.args) != len(whole.args) {
				t.Fatalf("%s differs from whole:\n%+v\n%+v", name, got, whole)
			}
		}
	})
}

// FuzzReadReply is FuzzReadCommand for server replies.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte(replies), uint8(7), int64(1))
	f.Add([]byte("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n"), uint8(9), int64(2))
	f.Add([]byte("$1099511627776\r\n"), uint8(1), int64(3))
	f.Fuzz(func(t *testing.T, data []byte, split uint8, seed int64) {
		lim := Limits{BufferSize: 32, MaxInline: 256, MaxBulk: 4096, MaxElements: 64, MaxDepth: 8}
		whole, werr := readAllReplies(bytes.NewReader(data), lim)
		cut := int(split) % (len(data) + 1)
		halves, herr := readAllReplies(io.MultiReader(bytes.NewReader(data[:cut]), bytes.NewReader(data[cut:])), lim)
		rnd := rand.New(rand.NewSource(seed))
		sizes := make([]int, 16)
		for i := range sizes {
			sizes[i] = 1 + rnd.Intn(40)
		}
		chunks, cerr := readAllReplies(&chunkReader{data: data, sizes: sizes}, lim)
		if herr != werr || cerr != werr || strings.Join(halves, "\x00") != strings.Join(whole, "\x00") ||
			strings.Join(chunks, "\x00") != strings.Join(whole, "\x00") {
			t.Fatalf("split reads differ:\nwhole %q %s\nhalves %q %s\nchunks %q %s", whole, werr, halves, herr, chunks, cerr)
		}
		// Every frame re-parses to itself and Elements never panics on it.
		for _, fr := range whole {
			again, e := readAllReplies(strings.NewReader(fr), lim)
			if e != "" || len(again) != 1 || again[0] != fr {
				t.Fatalf("frame %q re-parses as %q %s", fr, again, e)
			}
			_, _, _ = Elements([]byte(fr), nil)
		}
	})
}

func BenchmarkReadCommand(b *testing.B) {
	one := AppendCommandStrings(nil, "SET", "key:000123", strings.Repeat("x", 64))
	data := bytes.Repeat(one, 1000)
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	rd := bytes.NewReader(data)
	r := NewReader(rd, Limits{})
	for i := 0; i < b.N; i++ {
		if _, err := r.ReadCommand(); err != nil {
			rd.Reset(data)
			r = NewReader(rd, Limits{})
			if _, err := r.ReadCommand(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkReadReply(b *testing.B) {
	one := []byte("$64\r\n" + strings.Repeat("x", 64) + "\r\n")
	data := bytes.Repeat(one, 1000)
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	rd := bytes.NewReader(data)
	r := NewReplyReader(rd, Limits{})
	for i := 0; i < b.N; i++ {
		if _, err := r.ReadReply(); err != nil {
			rd.Reset(data)
			r = NewReplyReader(rd, Limits{})
			if _, err := r.ReadReply(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// scribblingRecycler lends back a retired buffer once every command read
// from it is finished, after overwriting it, so that a frame still in use
// when its buffer is lent again would be seen corrupted.
type scribblingRecycler struct {
	size     int
	returned *int // commands the Reader has returned
	finished *int // commands the test is done with
	retired  [][]byte
	at       []int
	lent     int
}

func (r *scribblingRecycler) Buffer(size int) []byte {
	if size != r.size || len(r.retired) == 0 || r.at[0] > *r.finished {
		return nil
	}
	b := r.retired[0]
	r.retired, r.at = r.retired[1:], r.at[1:]
	for i := range b {
		b[i] = 0xAA
	}
	r.lent++
	return b
}

func (r *scribblingRecycler) Retire(b []byte) {
	r.retired = append(r.retired, b)
	r.at = append(r.at, *r.returned)
}

// TestReadCommandRecycler: with a Recycler, a Reader reads into buffers lent
// back once the commands read from them are finished, and every command
// stays intact while it is in use, however the stream is split.
func TestReadCommandRecycler(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	const total, window = 3000, 6 // commands, and how many are in use at once
	var stream []byte
	want := make([][]byte, total)
	for i := range want {
		args := [][]byte{[]byte("SET"), []byte("key:" + strings.Repeat("k", rng.Intn(20)))}
		v := make([]byte, rng.Intn(700))
		rng.Read(v)
		args = append(args, v)
		if i%97 == 0 {
			args = [][]byte{[]byte("PING"), []byte("inline")} // re-encoded into a buffer of its own
			stream = append(stream, "PING inline\r\n"...)
		} else {
			stream = AppendCommand(stream, args...)
		}
		want[i] = AppendCommand(nil, args...)
	}
	var returned, finished int
	rc := &scribblingRecycler{size: 1024, returned: &returned, finished: &finished}
	r := NewReader(&chunkReader{data: stream, sizes: []int{1, 700, 33, 4096, 300}}, Limits{BufferSize: 1024})
	r.SetRecycler(rc)
	var inUse [][]byte
	for returned < total {
		c, err := r.ReadCommand()
		if err != nil {
			t.Fatalf("command %d: %v", returned, err)
		}
		if !bytes.Equal(c.Raw, want[returned]) {
			t.Fatalf("command %d read as %q", returned, c.Raw)
		}
		returned++
		inUse = append(inUse, c.Raw)
		if len(inUse) > window {
			if !bytes.Equal(inUse[0], want[finished]) {
				t.Fatalf("command %d changed while in use: %q", finished, inUse[0])
			}
			inUse = inUse[1:]
			finished++
		}
	}
	if rc.lent == 0 {
		t.Fatal("no buffer was lent back")
	}
	t.Logf("%d buffers lent back, %d retired and not lent", rc.lent, len(rc.retired))
}

// scriptedIdle is an IdleReader whose reads follow a script: "d" data is
// waiting, "p" park then data, "t" park then a timeout.
type scriptedIdle struct {
	chunks [][]byte
	script string
	step   int
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

func (s *scriptedIdle) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

func (s *scriptedIdle) ReadIdle(p []byte, park func(), unpark func() []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	op := s.script[s.step%len(s.script)]
	s.step++
	switch op {
	case 'p':
		park()
		p = unpark()
	case 't':
		park()
		return 0, timeoutErr{}
	}
	return s.Read(p)
}

// TestReadCommandIdle: a Reader over an IdleReader gives its buffer back
// while it waits with nothing buffered, reads on after a wait that timed
// out, and returns every command intact.
func TestReadCommandIdle(t *testing.T) {
	var chunks [][]byte
	var want []string
	for i := range 200 {
		f := AppendCommand(nil, []byte("SET"), []byte("k"+strings.Repeat("x", i%7)), bytes.Repeat([]byte{'v'}, i*3))
		want = append(want, string(f))
		chunks = append(chunks, f)
	}
	src := &scriptedIdle{chunks: chunks, script: "dpptdp"}
	var returned, finished int
	rc := &scribblingRecycler{size: 1024, returned: &returned, finished: &finished}
	r := NewReader(src, Limits{BufferSize: 1024})
	r.SetRecycler(rc)
	timeouts := 0
	for returned < len(want) {
		c, err := r.ReadCommand()
		if err != nil {
			if _, ok := err.(timeoutErr); ok {
				timeouts++
				continue
			}
			t.Fatalf("command %d: %v", returned, err)
		}
		if string(c.Raw) != want[returned] {
			t.Fatalf("command %d = %q", returned, c.Raw)
		}
		returned++
		finished = returned - 1 // the one before is answered
	}
	if timeouts == 0 || len(rc.retired)+rc.lent == 0 {
		t.Fatalf("timeouts %d, buffers retired %d, lent %d: the idle path was not taken", timeouts, len(rc.retired), rc.lent)
	}
}
