package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// KeySchema is the version of the key schema: it is part of every key
// ("gwc:v1:...") and of the hashed text, so a change in canonicalisation
// changes every key instead of mixing old and new entries.
const KeySchema = "v1"

// keyPrefix starts every entry key.
const keyPrefix = "gwc:" + KeySchema + ":{"

// Limits on Key's inputs.
const (
	// MaxNamespaceLen is the longest namespace, in bytes.
	MaxNamespaceLen = 128
	// MaxFieldLen is the longest endpoint, model or scope, in bytes.
	MaxFieldLen = 1024
	// MaxBodyBytes is the largest request body Key canonicalises.
	MaxBodyBytes = 32 << 20
)

// hashLen is the length of the hex SHA-256 in a key.
const hashLen = 64

// TransportFields are the top-level body fields Key drops: they change how
// an answer is delivered, not what it says. "stream" (one answer or a
// stream of chunks: the cache keeps either, and a client may replay a
// streamed entry as one value or the reverse) and "stream_options" (usage
// reporting in the stream). "user" is kept on purpose: it names the end
// user, and dropping it would share answers across users that the gateway
// may want apart; use scope to share or separate answers across tenants.
var TransportFields = []string{"stream", "stream_options"}

// Key returns the canonical cache key of a request.
//
// namespace names the cache (a product, an environment); it must be 1 to
// MaxNamespaceLen bytes without braces, spaces or control characters.
// endpoint (non-empty, such as "/v1/chat/completions"), model and scope
// (the tenant or user the answer may be shared within; empty means shared
// by everyone in the namespace) are at most MaxFieldLen bytes each.
//
// body must be one JSON object (at most MaxBodyBytes). It is canonicalised:
// object keys sorted at every depth, insignificant whitespace removed,
// strings re-encoded (so "\u00e9" and "é" are the same), numbers kept as
// their JSON text (so 1 and 1.0 differ: Key does not guess what a model
// server treats as equal), the TransportFields dropped from the top level.
// Of duplicate object keys the last one counts, as in encoding/json.
//
// The key is "gwc:v1:{<namespace>:<hex>}", hex the SHA-256 of the schema
// version and the length-prefixed namespace, endpoint, model, scope and
// canonical body.
func Key(namespace, endpoint, model, scope string, body []byte) (string, error) {
	if err := checkNamespace(namespace); err != nil {
		return "", fmt.Errorf("cache: key: %w", err)
	}
	if endpoint == "" {
		return "", fmt.Errorf("cache: key: %w: endpoint is empty", ErrBadArgument)
	}
	for _, f := range [...]struct{ name, v string }{{"endpoint", endpoint}, {"model", model}, {"scope", scope}} {
		if len(f.v) > MaxFieldLen {
			return "", fmt.Errorf("cache: key: %w: %s is %d bytes, longer than %d", ErrBadArgument, f.name, len(f.v), MaxFieldLen)
		}
	}
	canon, err := Canonical(body)
	if err != nil {
		return "", fmt.Errorf("cache: key: %w", err)
	}
	h := sha256.New()
	var n [8]byte
	for _, part := range [...]string{"gwc-key-" + KeySchema, namespace, endpoint, model, scope} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	binary.BigEndian.PutUint64(n[:], uint64(len(canon)))
	h.Write(n[:])
	h.Write(canon)
	var sum [sha256.Size]byte
	k := make([]byte, 0, len(keyPrefix)+len(namespace)+1+hashLen+1)
	k = append(k, keyPrefix...)
	k = append(k, namespace...)
	k = append(k, ':')
	k = hex.AppendEncode(k, h.Sum(sum[:0]))
	k = append(k, '}')
	return string(k), nil
}

// Canonical returns the canonical form of a JSON object request body, as
// Key hashes it (see Key).
func Canonical(body []byte) ([]byte, error) {
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("%w: body is %d bytes, more than %d", ErrBadJSON, len(body), MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: body is empty", ErrBadJSON)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrBadJSON)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: body is not a JSON object", ErrBadJSON)
	}
	for _, f := range TransportFields {
		delete(obj, f)
	}
	out := make([]byte, 0, len(body))
	return appendCanonical(out, obj)
}

// appendCanonical appends v (as decoded with UseNumber) in canonical form.
func appendCanonical(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case json.Number:
		return append(dst, x...), nil
	case string:
		return appendString(dst, x), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonical(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendCanonical(dst, x[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("%w: unexpected value %T", ErrBadJSON, v)
}

// appendString appends s as a JSON string: only '"', '\\' and control
// characters escaped, everything else (valid UTF-8 after decoding) as is.
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// checkNamespace validates a namespace.
func checkNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("%w: namespace is empty", ErrBadNamespace)
	}
	if len(ns) > MaxNamespaceLen {
		return fmt.Errorf("%w: namespace is %d bytes, longer than %d", ErrBadNamespace, len(ns), MaxNamespaceLen)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if c == '{' || c == '}' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: namespace %q has a brace, space or control character", ErrBadNamespace, ns)
		}
	}
	return nil
}

// Namespace returns the namespace of a key built by Key, or an error
// wrapping ErrBadKey when key is not one.
func Namespace(key string) (string, error) {
	if !strings.HasPrefix(key, keyPrefix) || !strings.HasSuffix(key, "}") {
		return "", fmt.Errorf("%w: %.80q is not a cache key (gwc:%s:{namespace:sha256})", ErrBadKey, key, KeySchema)
	}
	inner := key[len(keyPrefix) : len(key)-1]
	i := len(inner) - hashLen - 1
	if i < 1 || inner[i] != ':' {
		return "", fmt.Errorf("%w: %.80q is not a cache key (gwc:%s:{namespace:sha256})", ErrBadKey, key, KeySchema)
	}
	for _, c := range []byte(inner[i+1:]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: %.80q does not end in a lower-case hex SHA-256", ErrBadKey, key)
		}
	}
	ns := inner[:i]
	if err := checkNamespace(ns); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return ns, nil
}

// statsKey is the key of a namespace's counters.
func statsKey(ns string) string { return "gwc:" + KeySchema + ":stats:{" + ns + "}" }
