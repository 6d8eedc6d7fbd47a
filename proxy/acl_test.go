package proxy

import (
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/command"
)

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"app:*", "app:1", true}, {"app:*", "ap", false},
		{"{tenant}*", "{tenant}x", true}, {"{tenant}*", "x{tenant}", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false},
		{"[abc]x", "bx", true}, {"[abc]x", "dx", false}, {"[^abc]x", "dx", true}, {"[a-c]1", "b1", true},
		{"[a-c]1", "d1", false}, {`a\*b`, "a*b", true}, {`a\*b`, "axb", false}, {"**a", "ba", true},
		{"k", "k", true}, {"k", "kk", false}, {"*x", "xxxxxxxxxxxxxxxxxxy", false},
	}
	for _, c := range cases {
		if got := globMatch(c.p, []byte(c.s)); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
	// A pathological pattern stays fast (one backtracking point).
	if globMatch(strings.Repeat("*a", 50)+"b", []byte(strings.Repeat("a", 10000))) {
		t.Fatal("matched")
	}
}

func TestParseUsersErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"usr alice on", `want "user <name> <rules>..."`},
		{"user alice on #abc", "64 hex digits"},
		{"user alice %R~app:*", "not supported"},
		{"user alice bogus", `unknown rule`},
		{"user alice on\nuser alice off", "already defined on line 1"},
		{"user alice <secret", `rule "<..."`},
	} {
		_, err := ParseUsers(strings.NewReader(c.in), "f")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error shows the password: %v", c.in, err)
		}
	}
}

func TestCompileUser(t *testing.T) {
	var tbl command.Table
	tbl.Add(&command.Spec{Name: "get", Arity: 2, Categories: []string{"read", "string", "fast"},
		KeySpecs: []command.KeySpec{{Begin: command.BeginIndex, Index: 1, Find: command.FindRange}}})
	tbl.Add(&command.Spec{Name: "flushall", Arity: -1, Categories: []string{"keyspace", "write", "dangerous"}})
	tbl.Add(&command.Spec{Name: "cl.throttle", Arity: -5, Policy: command.Gateway,
		KeySpecs: []command.KeySpec{{Begin: command.BeginIndex, Index: 1, Find: command.FindRange}}})
	compile := func(rules string) *aclUser {
		t.Helper()
		u, err := compileUser(UserSpec{Name: "u", Rules: strings.Fields(rules)}, &tbl)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	get, flush, thr := tbl.Find("get"), tbl.Find("flushall"), tbl.Find("cl.throttle")
	u := compile("+@all -@dangerous ~k:*")
	if !u.mayRun(get) || u.mayRun(flush) || !u.mayRun(thr) || u.allCommands {
		t.Fatal("+@all -@dangerous")
	}
	u = compile("+@read")
	if !u.mayRun(get) || u.mayRun(thr) {
		t.Fatal("gateway commands are only in @gateway")
	}
	u = compile("+@gateway")
	if u.mayRun(get) || !u.mayRun(thr) {
		t.Fatal("+@gateway")
	}
	u = compile("-@all +flushall allcommands -get")
	if u.mayRun(get) || !u.mayRun(flush) {
		t.Fatal("rules apply in order")
	}
	check := func(u *aclUser, args ...string) string {
		var argv [][]byte
		for _, a := range args {
			argv = append(argv, []byte(a))
		}
		kind, _ := u.deny(get, argv, nil)
		return noPermError(kind, get.Name)
	}
	if msg := check(compile("+get ~k:*"), "get", "x"); msg != errNoPermKeys {
		t.Fatalf("key check: %q", msg)
	}
	if msg := check(compile("+get ~k:* resetkeys ~x"), "get", "x"); msg != "" {
		t.Fatalf("resetkeys then ~x: %q", msg)
	}
	if _, err := compileUser(UserSpec{Name: "u", Rules: []string{"+@nosuch"}}, &tbl); err == nil || !strings.Contains(err.Error(), "unknown category") {
		t.Fatalf("unknown category: %v", err)
	}
	u = compile("on nopass")
	if !u.passwordOK([]byte("anything")) {
		t.Fatal("nopass")
	}
	u = compile("on >a >b")
	if !u.passwordOK([]byte("b")) || u.passwordOK([]byte("c")) {
		t.Fatal("passwords")
	}
	if compile("off >a").passwordOK([]byte("a")) {
		t.Fatal("off user authenticated")
	}
}
