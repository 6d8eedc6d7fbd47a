package resp

import (
	"bytes"
	"errors"
	"io"
)

// IsError reports whether a reply frame is an error ('-' simple error or '!'
// bulk error).
func IsError(frame []byte) bool {
	return len(frame) > 0 && (frame[0] == '-' || frame[0] == '!')
}

// ErrorText returns the message of an error reply without the type byte and
// the CRLF ("MOVED 3999 127.0.0.1:7002"); nil when frame is not an error.
func ErrorText(frame []byte) []byte {
	if len(frame) < 3 {
		return nil
	}
	switch frame[0] {
	case '-':
		return frame[1 : len(frame)-2]
	case '!':
		i := bytes.IndexByte(frame, '\n')
		if i < 0 || i+1 > len(frame)-2 {
			return nil
		}
		return frame[i+1 : len(frame)-2]
	}
	return nil
}

// IntValue returns the value of an integer reply frame (":12\r\n").
func IntValue(frame []byte) (int64, bool) {
	if len(frame) < 4 || frame[0] != ':' {
		return 0, false
	}
	return parseInt(frame[1 : len(frame)-2])
}

// BulkValue returns the payload of a bulk or verbatim string frame; ok is
// false for any other type (a null bulk string included).
func BulkValue(frame []byte) ([]byte, bool) {
	if len(frame) < 4 || (frame[0] != '$' && frame[0] != '=') {
		return nil, false
	}
	i := bytes.IndexByte(frame, '\n')
	if i < 0 {
		return nil, false
	}
	n, ok := parseInt(frame[1 : i-1])
	if !ok || n < 0 || i+1+int(n)+2 != len(frame) {
		return nil, false
	}
	return frame[i+1 : i+1+int(n)], true
}

// ErrNotAggregate is returned by Elements for a frame that is not an array,
// set, map or push.
var ErrNotAggregate = errors.New("resp: frame is not an aggregate")

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Elements appends the raw frames of the elements of the aggregate frame
// (array, set, push; a map yields keys and values in turn) to dst. A null
// array yields no element and isNull true.
func Elements(frame []byte, dst [][]byte) (elems [][]byte, isNull bool, err error) {
	if len(frame) < 4 {
		return dst, false, ErrNotAggregate
	}
	switch frame[0] {
	case '*', '~', '>', '%':
	default:
		return dst, false, ErrNotAggregate
	}
	i := bytes.IndexByte(frame, '\n')
	if i < 0 {
		return dst, false, ErrNotAggregate
	}
	n, ok := parseInt(frame[1 : i-1])
	if !ok {
		return dst, false, protoErr("invalid multibulk length")
	}
	if n < 0 {
		return dst, true, nil
	}
	if frame[0] == '%' {
		n *= 2
	}
	r := &Reader{rd: eofReader{}, buf: frame, r: i + 1, w: len(frame),
		lim: Limits{}.withDefaults(DefaultMaxReplyElements)}
	for k := int64(0); k < n; k++ {
		e, err := r.ReadReply()
		if err != nil {
			return dst, false, err
		}
		dst = append(dst, e)
	}
	return dst, false, nil
}
