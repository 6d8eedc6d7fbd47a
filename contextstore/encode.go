package contextstore

import (
	"errors"
	"strconv"
	"strings"
)

// A stored message (an element of the ":m" list) is
//
//	<seq>,<tokens>,<role>,<len(id)>,<len(meta)>,<id><meta><content>
//
// with decimal numbers and role one byte (s, u, a, t). Go builds
// everything after "<seq>,"; the append script prefixes the sequence
// number it assigns. The pinned prompt is stored the same way with
// sequence number 0. The numbers up front let a reader slice the fields
// without copying them; content, the bulk of it, is never escaped.

// encodePayload builds a message without its sequence number.
func encodePayload(tokens int64, role byte, id, meta, content string) string {
	var b strings.Builder
	b.Grow(40 + len(id) + len(meta) + len(content))
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], tokens, 10))
	b.WriteByte(',')
	b.WriteByte(role)
	b.WriteByte(',')
	b.Write(strconv.AppendInt(num[:0], int64(len(id)), 10))
	b.WriteByte(',')
	b.Write(strconv.AppendInt(num[:0], int64(len(meta)), 10))
	b.WriteByte(',')
	b.WriteString(id)
	b.WriteString(meta)
	b.WriteString(content)
	return b.String()
}

var errBadEntry = errors.New("malformed stored message")

// decodeEntry parses a stored message. Its strings share e's memory.
func decodeEntry(e string) (Message, error) {
	var f [5]int64
	var role byte
	p := 0
	for i := range f {
		j := strings.IndexByte(e[p:], ',')
		if j < 0 {
			return Message{}, errBadEntry
		}
		field := e[p : p+j]
		p += j + 1
		if i == 2 {
			if len(field) != 1 {
				return Message{}, errBadEntry
			}
			role = field[0]
			continue
		}
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil || n < 0 {
			return Message{}, errBadEntry
		}
		f[i] = n
	}
	r, ok := roleOf(role)
	idLen, metaLen := f[3], f[4]
	if !ok || idLen > int64(len(e)-p) || metaLen > int64(len(e)-p)-idLen {
		return Message{}, errBadEntry
	}
	id := e[p : p+int(idLen)]
	p += int(idLen)
	meta := e[p : p+int(metaLen)]
	p += int(metaLen)
	return Message{Seq: f[0], Tokens: f[1], Role: r, ID: id, Meta: meta, Content: e[p:]}, nil
}
