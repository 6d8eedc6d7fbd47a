package cache_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/cache"
)

func mustKey(t *testing.T, ns, ep, model, scope, body string) string {
	t.Helper()
	k, err := cache.Key(ns, ep, model, scope, []byte(body))
	if err != nil {
		t.Fatalf("Key(%q): %v", body, err)
	}
	return k
}

func TestKeyCanonical(t *testing.T) {
	const ep, model = "/v1/chat/completions", "gpt-4o"
	base := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":1}`
	k := mustKey(t, "ns", ep, model, "t1", base)
	if !regexp.MustCompile(`^gwc:v1:\{ns:[0-9a-f]{64}\}$`).MatchString(k) {
		t.Fatalf("key %q has not the form gwc:v1:{ns:<sha256>}", k)
	}
	same := []string{
		// keys in another order, at every depth, and whitespace
		`{ "n" : 1, "temperature":0.2,
		   "messages":[{"content":"hi","role":"user"}], "model":"gpt-4o"}`,
		// transport-only fields dropped
		`{"stream":true,"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":1}`,
		`{"stream":false,"stream_options":{"include_usage":true},"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":1}`,
		// escapes decode to the same string
		`{"model":"gpt\u002d4o","messages":[{"role":"user","content":"h\u0069"}],"temperature":0.2,"n":1}`,
		// the last of duplicate keys counts
		`{"n":7,"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":1}`,
	}
	for _, b := range same {
		if got := mustKey(t, "ns", ep, model, "t1", b); got != k {
			t.Errorf("body %s: key %s, want %s (same request)", b, got, k)
		}
	}
	differ := map[string]string{
		"temperature":        `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.3,"n":1}`,
		"number text":        `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.20,"n":1}`,
		"content":            `{"model":"gpt-4o","messages":[{"role":"user","content":"hi!"}],"temperature":0.2,"n":1}`,
		"array order":        `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"user","content":"x"}],"temperature":0.2,"n":1}`,
		"extra param":        `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":1,"seed":1}`,
		"user kept":          `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":1,"user":"u1"}`,
		"nested stream kept": `{"model":"gpt-4o","messages":[{"role":"user","content":"hi","stream":true}],"temperature":0.2,"n":1}`,
	}
	seen := map[string]string{k: "base"}
	for name, b := range differ {
		got := mustKey(t, "ns", ep, model, "t1", b)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[got] = name
	}
	for name, args := range map[string][4]string{
		"namespace": {"ns2", ep, model, "t1"},
		"endpoint":  {"ns", "/v1/completions", model, "t1"},
		"model":     {"ns", ep, "gpt-4o-mini", "t1"},
		"scope":     {"ns", ep, model, "t2"},
		"no scope":  {"ns", ep, model, ""},
		// length prefixes: moving a byte from one field to the next differs
		"boundary": {"ns", ep + "g", "pt-4o", "t1"},
	} {
		got := mustKey(t, args[0], args[1], args[2], args[3], base)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[got] = name
	}
	// Namespace round trip.
	if ns, err := cache.Namespace(mustKey(t, "a:b.c-d", ep, model, "", base)); err != nil || ns != "a:b.c-d" {
		t.Errorf("Namespace = %q, %v; want a:b.c-d", ns, err)
	}
	c, err := cache.Canonical([]byte(`{"b":[1, 2.50, {"z":null,"a":true}], "a":"x\"y\u0001"}`))
	if err != nil || string(c) != `{"a":"x\"y\u0001","b":[1,2.50,{"a":true,"z":null}]}` {
		t.Errorf("Canonical = %s, %v", c, err)
	}
}

func TestKeyErrors(t *testing.T) {
	const ep = "/v1/chat/completions"
	long := strings.Repeat("x", cache.MaxFieldLen+1)
	for _, tc := range []struct {
		name                 string
		ns, ep, model, scope string
		body                 string
		want                 error
		msg                  string
	}{
		{"invalid json", "ns", ep, "m", "", `{"a":`, cache.ErrBadJSON, "not valid JSON"},
		{"not json", "ns", ep, "m", "", `hello`, cache.ErrBadJSON, "invalid character"},
		{"empty body", "ns", ep, "m", "", ``, cache.ErrBadJSON, "body is empty"},
		{"trailing data", "ns", ep, "m", "", `{} {}`, cache.ErrBadJSON, "data after"},
		{"array body", "ns", ep, "m", "", `[1]`, cache.ErrBadJSON, "not a JSON object"},
		{"string body", "ns", ep, "m", "", `"x"`, cache.ErrBadJSON, "not a JSON object"},
		{"empty namespace", "", ep, "m", "", `{}`, cache.ErrBadNamespace, "empty"},
		{"brace namespace", "a{b}", ep, "m", "", `{}`, cache.ErrBadNamespace, "brace"},
		{"space namespace", "a b", ep, "m", "", `{}`, cache.ErrBadNamespace, "brace, space"},
		{"long namespace", strings.Repeat("n", cache.MaxNamespaceLen+1), ep, "m", "", `{}`, cache.ErrBadNamespace, "longer than 128"},
		{"empty endpoint", "ns", "", "m", "", `{}`, cache.ErrBadArgument, "endpoint is empty"},
		{"long endpoint", "ns", long, "m", "", `{}`, cache.ErrBadArgument, "endpoint is 1025 bytes"},
		{"long model", "ns", ep, long, "", `{}`, cache.ErrBadArgument, "model is 1025 bytes"},
		{"long scope", "ns", ep, "m", long, `{}`, cache.ErrBadArgument, "scope is 1025 bytes"},
	} {
		_, err := cache.Key(tc.ns, tc.ep, tc.model, tc.scope, []byte(tc.body))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err %v, want %v containing %q", tc.name, err, tc.want, tc.msg)
		}
	}
	if _, err := cache.Key("ns", ep, "m", "", make([]byte, cache.MaxBodyBytes+1)); !errors.Is(err, cache.ErrBadJSON) {
		t.Errorf("huge body: %v, want ErrBadJSON", err)
	}
	good := mustKey(t, "ns", ep, "m", "", `{}`)
	for _, k := range []string{
		"", "foo", "gwc:v1:{ns}", "gwc:v2:" + good[7:], good[:len(good)-1],
		strings.Replace(good, "{ns:", "{:", 1),
		strings.Replace(good, "{ns:", "{n{s:", 1),
		good[:len(good)-2] + "G}",
		strings.ToUpper(good),
	} {
		if _, err := cache.Namespace(k); !errors.Is(err, cache.ErrBadKey) {
			t.Errorf("Namespace(%q) = %v, want ErrBadKey", k, err)
		}
	}
}
