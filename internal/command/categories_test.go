package command

import (
	"slices"
	"testing"
)

// TestCategories: ACL categories come from the server's COMMAND reply, with
// the proxy's additions; gateway commands are only in @gateway.
func TestCategories(t *testing.T) {
	for name, want := range map[string][]string{
		"get":          {"read", "string", "fast"},
		"flushall":     {"keyspace", "write", "slow", "dangerous"},
		"config|set":   {"admin", "slow", "dangerous"},
		"script|flush": {"slow", "scripting", "dangerous"}, // "dangerous" added by the proxy
	} {
		s := table.Find(name)
		if s == nil {
			t.Fatalf("%s not found", name)
		}
		for _, c := range want {
			if !s.InCategory(c) {
				t.Errorf("%s: categories %v lack %q", name, s.Categories, c)
			}
		}
		if !s.InCategory("all") || s.InCategory(CategoryGateway) {
			t.Errorf("%s: @all/@gateway wrong", name)
		}
	}
	if slices.Contains(table.Find("get").Categories, "dangerous") {
		t.Error("get is not dangerous")
	}
	gw := &Spec{Name: "cl.throttle", Policy: Gateway, Categories: []string{"write"}}
	if !gw.InCategory(CategoryGateway) || gw.InCategory("write") || !gw.InCategory("all") {
		t.Error("a gateway command is in @gateway (and @all) only")
	}
	ss := table.Find("ssubscribe")
	if !ss.KeysAreChannels() || table.Find("get").KeysAreChannels() {
		t.Error("KeysAreChannels")
	}
}
