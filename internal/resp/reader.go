// Package resp reads and writes the Redis serialization protocol (RESP2 and
// RESP3) for clusterproxy.
//
// The Reader returns frames as raw byte spans into its own buffers. A buffer is
// never written over once a frame has been returned from it: when a buffer is
// full the Reader starts a new one and copies only the unfinished tail, so a
// frame stays valid after later reads and can be handed to another goroutine
// (a node pipe, a session writer) without a copy. With a Recycler, a buffer the
// Reader has left is written over only once the Recycler lends it again, which
// its owner allows when no frame from it is in use. Parsing is resumable: a
// frame that arrives in many reads is scanned once, not once per read.
//
// Every length is checked against Limits before anything is allocated for it.
package resp

import (
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Default limits. They follow Redis's own defaults where Redis has one.
const (
	// DefaultMaxBulk is the largest bulk string accepted (Redis proto-max-bulk-len).
	DefaultMaxBulk = 512 << 20
	// DefaultMaxArgs is the largest number of arguments in one client command.
	DefaultMaxArgs = 1 << 20
	// DefaultMaxReplyElements is the largest aggregate accepted in a reply.
	DefaultMaxReplyElements = 1 << 30
	// DefaultMaxInline is the longest inline command or protocol line (Redis PROTO_INLINE_MAX_SIZE).
	DefaultMaxInline = 64 << 10
	// DefaultMaxDepth is the deepest nesting of aggregates accepted in a reply.
	DefaultMaxDepth = 64
	// DefaultBufferSize is the size of each read buffer.
	DefaultBufferSize = 16 << 10
)

// Limits bound what a Reader accepts. A zero field means its default.
type Limits struct {
	MaxBulk     int64 // bytes in one bulk string; default DefaultMaxBulk
	MaxElements int64 // elements in one aggregate; default DefaultMaxArgs for commands, DefaultMaxReplyElements for replies
	MaxInline   int   // bytes in one protocol line or inline command; default DefaultMaxInline
	MaxDepth    int   // nesting of aggregates (replies only); default DefaultMaxDepth
	BufferSize  int   // size of a fresh read buffer; default DefaultBufferSize
}

func (l Limits) withDefaults(elements int64) Limits {
	if l.MaxBulk <= 0 {
		l.MaxBulk = DefaultMaxBulk
	}
	if l.MaxElements <= 0 {
		l.MaxElements = elements
	}
	if l.MaxInline <= 0 {
		l.MaxInline = DefaultMaxInline
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.BufferSize <= 0 {
		l.BufferSize = DefaultBufferSize
	}
	return l
}

// ProtocolError is a malformed frame. Its message follows Redis's wording
// ("invalid bulk length", ...); the proxy answers "-ERR Protocol error: <msg>"
// and closes the connection.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

func protoErr(msg string) error { return &ProtocolError{Msg: msg} }

// IsProtocolError reports whether err is a *ProtocolError.
func IsProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

// minRead is the least free space worth a read call; with less, a new buffer is started.
const minRead = 512

// errTooLong is returned by line when a line exceeds MaxInline.
var errTooLong = protoErr("too big inline request")

// errIncomplete is returned by the scanners when the buffer ends mid-frame.
var errIncomplete = errors.New("resp: incomplete frame")

// Command is one client request.
type Command struct {
	// Raw is the whole request as a RESP array of bulk strings. It is stable:
	// it stays valid and unchanged after later reads (with a Recycler, until
	// its owner lets the buffer be lent again). An inline command is
	// re-encoded into this form.
	Raw []byte
	// Args are the arguments, sub-slices of Raw. The Args slice itself (not
	// the bytes it points at) is reused by the next ReadCommand.
	Args [][]byte
}

type span struct{ start, end int }

// Reader reads frames from a connection. It is not safe for concurrent use.
type Reader struct {
	rd   io.Reader
	lim  Limits
	buf  []byte
	r, w int // buf[r:w] holds unparsed bytes; buf[:r] may be referenced by returned frames
	err  error

	// resumable scan state for the frame starting at r
	off   int     // bytes of the frame already scanned
	stack []int64 // remaining elements per open aggregate (replies); attribute aggregates are negative-encoded
	need  int     // bytes (from r) the frame needs at least, when known

	// presize, when above 0, bounds how far ahead of the data received a
	// buffer is sized for a known length (client commands): see fill.
	presize int

	// command state
	nargs int64
	spans []span
	args  [][]byte

	recycler Recycler // nil: buffers are left to the garbage collector
	// idle is rd when it is an IdleReader and a Recycler is set; park and
	// unpark are the callbacks given to it, made once.
	idle   IdleReader
	park   func()
	unpark func() []byte
}

// IdleReader is a connection that can wait for data without a buffer: a
// Reader with a Recycler, having nothing buffered, reads with ReadIdle, so
// that an idle connection holds no read buffer.
type IdleReader interface {
	// ReadIdle reads into p when data is waiting. Otherwise it calls park
	// (p must not be used after that), waits for data, and reads into the
	// buffer unpark returns; if the wait ends in an error, unpark may never
	// have been called.
	ReadIdle(p []byte, park func(), unpark func() []byte) (int, error)
}

// Recycler lends a command Reader its read buffers and takes back the ones
// it stops reading into, so that a busy connection does not allocate a
// buffer for every BufferSize bytes it sends. A retired buffer still holds
// the frames returned from it: the Recycler must not lend it again until
// the Reader's owner knows none of them is in use any more.
type Recycler interface {
	// Buffer returns a buffer of exactly size bytes, or nil for a new one.
	Buffer(size int) []byte
	// Retire takes back a buffer the Reader no longer reads into.
	Retire(buf []byte)
}

// SetRecycler makes the Reader take its buffers from rc and give them back
// to it. If the Reader's source is an IdleReader, the buffer also goes back
// to rc while the Reader waits for data with nothing buffered.
func (r *Reader) SetRecycler(rc Recycler) {
	r.recycler = rc
	if ir, ok := r.rd.(IdleReader); ok && rc != nil {
		r.idle = ir
		r.park = func() {
			old := r.buf
			r.buf, r.r, r.w = nil, 0, 0
			r.retire(old)
		}
		r.unpark = func() []byte {
			r.buf = r.newBuffer(r.lim.BufferSize)
			return r.buf
		}
	}
}

// newBuffer returns a buffer of size bytes for fill.
func (r *Reader) newBuffer(size int) []byte {
	if r.recycler != nil {
		if b := r.recycler.Buffer(size); len(b) == size {
			return b
		}
	}
	return make([]byte, size)
}

// retire hands old, a buffer no longer read into, to the Recycler.
func (r *Reader) retire(old []byte) {
	if r.recycler != nil && old != nil {
		r.recycler.Retire(old)
	}
}

// commandPresize is how many bytes of an announced bulk string a command
// Reader allocates before they arrive. A client's announced length is
// trusted only that far: a header claiming a bulk as large as MaxBulk costs
// no more than this until the bytes come, and larger bulks grow the buffer
// geometrically with the data received.
const commandPresize = 64 << 10

// NewReader returns a Reader for client commands (ReadCommand) with limits l.
func NewReader(rd io.Reader, l Limits) *Reader {
	return &Reader{rd: rd, lim: l.withDefaults(DefaultMaxArgs), presize: commandPresize}
}

// NewReplyReader returns a Reader for server replies (ReadReply) with limits l.
func NewReplyReader(rd io.Reader, l Limits) *Reader {
	return &Reader{rd: rd, lim: l.withDefaults(DefaultMaxReplyElements)}
}

// Buffered reports how many unparsed bytes are buffered.
func (r *Reader) Buffered() int { return r.w - r.r }

// fill reads more data, starting a new buffer when the current one has no
// room left. Bytes before r are never touched.
func (r *Reader) fill() error {
	if r.err != nil {
		return r.err
	}
	pending := r.w - r.r
	need := r.need
	if r.presize > 0 {
		need = min(need, r.presize)
	}
	want := max(pending+1, need) // bytes from r the buffer must hold
	if r.buf == nil || len(r.buf)-r.r < want || len(r.buf)-r.w < minRead {
		// Start a new buffer; the old one stays valid for returned frames.
		// Growth is geometric in what is pending, so a frame that arrives in
		// many reads is copied O(log n) times; a known bulk length sizes the
		// buffer at once (it was checked against MaxBulk before), up to
		// presize bytes ahead of the data for client commands.
		size := max(r.lim.BufferSize, 2*pending)
		if r.need > 0 {
			full := r.need + minRead
			if r.presize > 0 {
				full = min(full, max(r.presize, 2*pending))
			}
			size = max(size, full)
		}
		nb := r.newBuffer(size)
		copy(nb, r.buf[r.r:r.w])
		old := r.buf
		r.buf, r.r, r.w = nb, 0, pending
		r.retire(old)
	}
	var n int
	var err error
	if r.idle != nil && pending == 0 && r.need == 0 && len(r.buf) == r.lim.BufferSize {
		// Nothing of a frame is buffered: the buffer may go back to the
		// Recycler while the connection has nothing to read.
		n, err = r.idle.ReadIdle(r.buf[r.w:], r.park, r.unpark)
	} else {
		n, err = r.rd.Read(r.buf[r.w:])
	}
	r.w += n
	if err != nil {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
			// A deadline is not the end of the stream: the caller may
			// extend it and read on.
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			r.err = err // report after the bytes read are consumed
			return nil
		}
		r.err = err
		return err
	}
	return nil
}

// ReadMore reads once from the connection into the buffer without parsing,
// to watch a connection (for example a client blocked in BLPOP) without
// acting on what it sends. Timeouts are not sticky.
func (r *Reader) ReadMore() error { return r.fill() }

// ReadReply returns the next complete reply frame (any RESP2 or RESP3 type,
// attributes included). The frame is stable (see the package comment).
func (r *Reader) ReadReply() ([]byte, error) {
	for {
		end, err := r.scanReply()
		if err == nil {
			frame := r.buf[r.r:end:end]
			r.r = end
			r.off, r.need = 0, 0
			r.stack = r.stack[:0]
			return frame, nil
		}
		if err != errIncomplete {
			return nil, err
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && r.w > r.r {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// line finds the CRLF-terminated line at p (p within buf[r:w]) and returns the
// index of '\r'.
func (r *Reader) line(p int) (int, error) {
	i := bytes.IndexByte(r.buf[p:r.w], '\n')
	if i < 0 {
		// The line holds at most MaxInline bytes before its CRLF, so its
		// '\n' can be as far as MaxInline+1: only past that is it known to
		// be too long, whatever the reads delivered so far.
		if r.w-p > r.lim.MaxInline+1 {
			return 0, errTooLong
		}
		return 0, errIncomplete
	}
	if i-1 > r.lim.MaxInline {
		return 0, errTooLong
	}
	if i == 0 || r.buf[p+i-1] != '\r' {
		return 0, protoErr("expected CRLF line terminator")
	}
	return p + i - 1, nil
}

// scanReply scans one reply from r+off, resuming where the last call stopped.
// It returns the end offset of the complete frame.
func (r *Reader) scanReply() (int, error) {
	p := r.r + r.off
	for {
		if p >= r.w {
			r.off = p - r.r
			return 0, errIncomplete
		}
		cr, err := r.line(p)
		if err != nil {
			r.off = p - r.r
			return 0, err
		}
		typ := r.buf[p]
		next := cr + 2
		switch typ {
		case '+', '-', ':', '_', ',', '#', '(':
			if typ == ':' {
				if _, ok := parseInt(r.buf[p+1 : cr]); !ok {
					return 0, protoErr("invalid integer")
				}
			}
		case '$', '!', '=':
			n, ok := parseInt(r.buf[p+1 : cr])
			if !ok || n < -1 || (n == -1 && typ != '$') {
				return 0, protoErr("invalid bulk length")
			}
			if n > r.lim.MaxBulk {
				return 0, protoErr("bulk length exceeds the limit")
			}
			if n >= 0 {
				end := next + int(n) + 2
				if end > r.w {
					r.off = p - r.r
					r.need = end - r.r
					return 0, errIncomplete
				}
				if r.buf[end-2] != '\r' || r.buf[end-1] != '\n' {
					return 0, protoErr("bulk string not terminated by CRLF")
				}
				next = end
			}
		case '*', '%', '~', '>', '|':
			n, ok := parseInt(r.buf[p+1 : cr])
			if !ok || n < -1 || (n == -1 && typ != '*') {
				return 0, protoErr("invalid multibulk length")
			}
			if n > r.lim.MaxElements {
				return 0, protoErr("aggregate length exceeds the limit")
			}
			if typ == '%' || typ == '|' {
				n *= 2
			}
			if n > 0 {
				if len(r.stack) >= r.lim.MaxDepth {
					return 0, protoErr("nesting exceeds the limit")
				}
				if typ == '|' {
					// An attribute precedes the value it annotates: once its
					// pairs are read, the parent still expects that value.
					n = -n
				}
				r.stack = append(r.stack, n)
				p = next
				r.off = p - r.r
				continue
			}
			if typ == '|' {
				p = next
				r.off = p - r.r
				continue
			}
		default:
			return 0, protoErr("invalid reply type byte '" + printable(typ) + "'")
		}
		// one element complete: pop finished aggregates
		p = next
		for len(r.stack) > 0 {
			top := &r.stack[len(r.stack)-1]
			attr := *top < 0
			if attr {
				*top++
			} else {
				*top--
			}
			if *top != 0 {
				break
			}
			r.stack = r.stack[:len(r.stack)-1]
			if !attr {
				continue // the aggregate is itself an element of its parent
			}
			// a finished attribute is not an element: the annotated value follows
			goto nextElement
		}
		if len(r.stack) == 0 {
			r.off = p - r.r
			return p, nil
		}
	nextElement:
		r.off = p - r.r
		r.need = 0
	}
}

// ReadCommand returns the next client command. Empty arrays and blank inline
// lines are skipped, as Redis does. Errors are *ProtocolError for malformed
// input, io.EOF at a clean end of stream, or the connection's error.
func (r *Reader) ReadCommand() (Command, error) {
	for {
		end, err := r.scanCommand()
		if err == nil {
			if end < 0 { // skipped empty command
				continue
			}
			return r.finishCommand(end), nil
		}
		if err != errIncomplete {
			return Command{}, err
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && r.w > r.r {
				return Command{}, io.ErrUnexpectedEOF
			}
			return Command{}, err
		}
	}
}

func (r *Reader) finishCommand(end int) Command {
	frame := r.buf[r.r:end:end]
	r.args = r.args[:0]
	for _, s := range r.spans {
		r.args = append(r.args, frame[s.start:s.end:s.end])
	}
	r.r = end
	r.off, r.need, r.nargs = 0, 0, 0
	r.spans = r.spans[:0]
	return Command{Raw: frame, Args: r.args}
}

// scanCommand scans one command. It returns -1 (and consumes the input) for an
// empty command that must be ignored.
func (r *Reader) scanCommand() (int, error) {
	if r.off == 0 {
		if r.r >= r.w {
			return 0, errIncomplete
		}
		if r.buf[r.r] != '*' {
			return r.scanInline()
		}
		cr, err := r.line(r.r)
		if err != nil {
			if err == errTooLong {
				return 0, protoErr("too big mbulk count string")
			}
			return 0, err
		}
		n, ok := parseInt(r.buf[r.r+1 : cr])
		if !ok {
			return 0, protoErr("invalid multibulk length")
		}
		if n > r.lim.MaxElements {
			return 0, r.overArgs(strconv.FormatInt(n, 10))
		}
		if n <= 0 {
			r.r = cr + 2
			return -1, nil
		}
		r.nargs = n
		r.off = cr + 2 - r.r
		r.spans = r.spans[:0]
	}
	p := r.r + r.off
	for int64(len(r.spans)) < r.nargs {
		if p >= r.w {
			r.off = p - r.r
			return 0, errIncomplete
		}
		if r.buf[p] != '$' {
			return 0, protoErr("expected '$', got '" + printable(r.buf[p]) + "'")
		}
		cr, err := r.line(p)
		if err != nil {
			if err == errTooLong {
				return 0, protoErr("too big bulk count string")
			}
			r.off = p - r.r
			return 0, err
		}
		n, ok := parseInt(r.buf[p+1 : cr])
		if !ok || n < 0 {
			return 0, protoErr("invalid bulk length")
		}
		if n > r.lim.MaxBulk {
			// Refused before anything is allocated for it.
			return 0, protoErr("invalid bulk length: " + strconv.FormatInt(n, 10) +
				" bytes is over the limit of " + strconv.FormatInt(r.lim.MaxBulk, 10) + " bytes (max-bulk)")
		}
		start := cr + 2
		end := start + int(n) + 2
		if end > r.w {
			r.off = p - r.r
			r.need = end - r.r
			return 0, errIncomplete
		}
		if r.buf[end-2] != '\r' || r.buf[end-1] != '\n' {
			return 0, protoErr("bulk string not terminated by CRLF")
		}
		r.spans = append(r.spans, span{start - r.r, end - 2 - r.r})
		p = end
		r.off = p - r.r
		r.need = 0
	}
	return p, nil
}

// scanInline parses an inline command (a text line, as typed in telnet) and
// re-encodes it as a RESP array so that it can be forwarded unchanged.
func (r *Reader) scanInline() (int, error) {
	i := bytes.IndexByte(r.buf[r.r:r.w], '\n')
	if i < 0 {
		if r.w-r.r > r.lim.MaxInline {
			return 0, r.overInline()
		}
		return 0, errIncomplete
	}
	if i > r.lim.MaxInline {
		return 0, r.overInline()
	}
	line := r.buf[r.r : r.r+i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := splitInline(line)
	if !ok {
		return 0, protoErr("unbalanced quotes in request")
	}
	r.r += i + 1
	if len(args) == 0 {
		return -1, nil
	}
	if int64(len(args)) > r.lim.MaxElements {
		return 0, r.overArgs(strconv.Itoa(len(args)))
	}
	// Encode into a fresh buffer that becomes the current one, so the frame is
	// stable like any other. Inline commands are rare (telnet, health checks).
	size := 16
	for _, a := range args {
		size += len(a) + 16
	}
	enc := make([]byte, 0, size)
	enc = AppendArrayHeader(enc, len(args))
	r.spans = r.spans[:0]
	for _, a := range args {
		enc = appendPrefixLen(enc, '$', int64(len(a)))
		r.spans = append(r.spans, span{len(enc), len(enc) + len(a)})
		enc = append(enc, a...)
		enc = append(enc, '\r', '\n')
	}
	rest := r.w - r.r
	nb := make([]byte, len(enc)+max(rest+512, r.lim.BufferSize))
	copy(nb, enc)
	copy(nb[len(enc):], r.buf[r.r:r.w])
	old := r.buf
	r.buf, r.r, r.w = nb, 0, len(enc)+rest
	r.retire(old)
	return len(enc), nil
}

// overArgs is the error for a command of n arguments, more than MaxElements.
func (r *Reader) overArgs(n string) error {
	return protoErr("invalid multibulk length: " + n + " arguments is over the limit of " +
		strconv.FormatInt(r.lim.MaxElements, 10) + " (max-args)")
}

// overInline is the error for an inline command longer than MaxInline.
func (r *Reader) overInline() error {
	return protoErr("too big inline request: over the limit of " + strconv.Itoa(r.lim.MaxInline) + " bytes")
}

// splitInline splits an inline command line into arguments with Redis's
// quoting rules (sdssplitargs): "double quotes" with \n \r \t \b \a \\ \" \xHH
// escapes, 'single quotes' with \' only. A closing quote must be followed by a
// space or the end of the line.
func splitInline(line []byte) ([][]byte, bool) {
	var args [][]byte
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return args, true
		}
		var cur []byte
		inDq, inSq := false, false
		for done := false; !done; {
			if inDq {
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					cur = append(cur, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					switch line[i] {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, line[i])
					}
				case c == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, c)
				}
			} else if inSq {
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					i++
					cur = append(cur, '\'')
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, c)
				}
			} else {
				if i >= len(line) {
					break
				}
				switch c := line[i]; c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inDq = true
				case '\'':
					inSq = true
				default:
					cur = append(cur, c)
				}
			}
			if i < len(line) {
				i++
			}
		}
		if cur == nil {
			cur = []byte{}
		}
		args = append(args, cur)
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0 }
func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	const hex = "0123456789abcdef"
	return `\x` + string([]byte{hex[c>>4], hex[c&15]})
}

// parseInt parses a decimal int64 as RESP writes it: optional '-', digits,
// no spaces, no '+', no overflow.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63)/10 { // n*10 would pass 2^63 (and could wrap)
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// ParseInt parses a RESP decimal integer (as used in lengths and ':' replies).
func ParseInt(b []byte) (int64, bool) { return parseInt(b) }
