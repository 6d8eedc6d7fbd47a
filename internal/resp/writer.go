package resp

import (
	"math"
	"strconv"
)

// Protocol versions a client can speak.
const (
	RESP2 = 2
	RESP3 = 3
)

func appendPrefixLen(dst []byte, prefix byte, n int64) []byte {
	dst = append(dst, prefix)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendArrayHeader appends "*n\r\n".
func AppendArrayHeader(dst []byte, n int) []byte { return appendPrefixLen(dst, '*', int64(n)) }

// AppendMapHeader appends a map header of n pairs: "%n" in RESP3, an array of
// 2n elements in RESP2.
func AppendMapHeader(dst []byte, n int, proto int) []byte {
	if proto >= RESP3 {
		return appendPrefixLen(dst, '%', int64(n))
	}
	return appendPrefixLen(dst, '*', int64(2*n))
}

// AppendSetHeader appends a set header: "~n" in RESP3, "*n" in RESP2.
func AppendSetHeader(dst []byte, n int, proto int) []byte {
	if proto >= RESP3 {
		return appendPrefixLen(dst, '~', int64(n))
	}
	return appendPrefixLen(dst, '*', int64(n))
}

// AppendPushHeader appends a push header: ">n" in RESP3, "*n" in RESP2.
func AppendPushHeader(dst []byte, n int, proto int) []byte {
	if proto >= RESP3 {
		return appendPrefixLen(dst, '>', int64(n))
	}
	return appendPrefixLen(dst, '*', int64(n))
}

// AppendBulk appends a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = appendPrefixLen(dst, '$', int64(len(b)))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = appendPrefixLen(dst, '$', int64(len(s)))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendVerbatim appends a verbatim string of format "txt" in RESP3, a bulk
// string in RESP2.
func AppendVerbatim(dst []byte, s string, proto int) []byte {
	if proto < RESP3 {
		return AppendBulkString(dst, s)
	}
	dst = appendPrefixLen(dst, '=', int64(len(s)+4))
	dst = append(dst, "txt:"...)
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte { return appendPrefixLen(dst, ':', n) }

// AppendSimple appends a simple string reply; s must not contain CR or LF.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendOK appends "+OK\r\n".
func AppendOK(dst []byte) []byte { return append(dst, "+OK\r\n"...) }

// AppendError appends an error reply. msg starts with its code ("ERR ...",
// "CROSSSLOT ..."); CR and LF in msg are replaced by spaces so a client's
// input echoed in an error can never break the framing.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// AppendNull appends a null: "_" in RESP3, a null bulk string in RESP2.
func AppendNull(dst []byte, proto int) []byte {
	if proto >= RESP3 {
		return append(dst, "_\r\n"...)
	}
	return append(dst, "$-1\r\n"...)
}

// AppendNullArray appends a null array: "_" in RESP3, "*-1" in RESP2.
func AppendNullArray(dst []byte, proto int) []byte {
	if proto >= RESP3 {
		return append(dst, "_\r\n"...)
	}
	return append(dst, "*-1\r\n"...)
}

// AppendBool appends a boolean: "#t"/"#f" in RESP3, 1/0 in RESP2.
func AppendBool(dst []byte, v bool, proto int) []byte {
	if proto >= RESP3 {
		if v {
			return append(dst, "#t\r\n"...)
		}
		return append(dst, "#f\r\n"...)
	}
	if v {
		return AppendInt(dst, 1)
	}
	return AppendInt(dst, 0)
}

// AppendDouble appends a double: "," in RESP3, a bulk string in RESP2.
func AppendDouble(dst []byte, f float64, proto int) []byte {
	var s []byte
	switch {
	case math.IsInf(f, 1):
		s = []byte("inf")
	case math.IsInf(f, -1):
		s = []byte("-inf")
	default:
		s = strconv.AppendFloat(nil, f, 'g', 17, 64)
	}
	if proto >= RESP3 {
		dst = append(dst, ',')
		dst = append(dst, s...)
		return append(dst, '\r', '\n')
	}
	return AppendBulk(dst, s)
}

// AppendCommand appends args as a RESP array of bulk strings (a request).
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

// AppendCommandStrings is AppendCommand for string arguments.
func AppendCommandStrings(dst []byte, args ...string) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulkString(dst, a)
	}
	return dst
}
