package proxy

import (
	"encoding/hex"
	"maps"
	"slices"
	"strings"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// ACL LIST and ACL GETUSER describe the proxy's users in Redis's form, as
// they are checked (the users file's rules applied, categories resolved
// against the cluster's command table).

// aclList answers ACL LIST: one line per user, in name order.
func (s *session) aclList(c *call) *call {
	set := s.srv.users.Load()
	names := slices.Sorted(maps.Keys(set.byName))
	c.reply = resp.AppendArrayHeader(c.reply, len(names))
	for _, n := range names {
		c.reply = resp.AppendBulkString(c.reply, set.byName[n].describe(s.srv.table))
	}
	return c
}

// aclGetUser answers ACL GETUSER name, with Redis 7.0's fields; a null for
// an unknown user.
func (s *session) aclGetUser(c *call, args [][]byte) *call {
	if len(args) != 3 {
		return c.fail("ERR wrong number of arguments for 'acl|getuser' command")
	}
	u := s.srv.users.Load().byName[string(args[2])]
	if u == nil {
		c.reply = resp.AppendNull(c.reply, s.proto)
		return c
	}
	flags := []string{"off"}
	if u.enabled {
		flags[0] = "on"
	}
	if u.nopass {
		flags = append(flags, "nopass")
	}
	b := resp.AppendMapHeader(c.reply, 6, s.proto)
	b = resp.AppendBulkString(b, "flags")
	b = resp.AppendArrayHeader(b, len(flags))
	for _, f := range flags {
		b = resp.AppendBulkString(b, f)
	}
	b = resp.AppendBulkString(b, "passwords")
	b = resp.AppendArrayHeader(b, len(u.hashes))
	for _, h := range u.hashes {
		b = resp.AppendBulkString(b, hex.EncodeToString(h[:]))
	}
	b = resp.AppendBulkString(b, "commands")
	b = resp.AppendBulkString(b, u.commandRules(s.srv.table))
	b = resp.AppendBulkString(b, "keys")
	b = resp.AppendBulkString(b, strings.Join(u.keyRules(), " "))
	b = resp.AppendBulkString(b, "channels")
	b = resp.AppendBulkString(b, strings.Join(u.channelRules(false), " "))
	b = resp.AppendBulkString(b, "selectors")
	b = resp.AppendArrayHeader(b, 0)
	c.reply = b
	return c
}

// describe renders the user as an ACL LIST line, which read back as a
// users file line gives the same user.
func (u *aclUser) describe(t *command.Table) string {
	parts := []string{"user", u.name, "off"}
	if u.enabled {
		parts[2] = "on"
	}
	if u.nopass {
		parts = append(parts, "nopass")
	}
	for _, h := range u.hashes {
		parts = append(parts, "#"+hex.EncodeToString(h[:]))
	}
	parts = append(parts, u.keyRules()...)
	parts = append(parts, u.channelRules(true)...)
	parts = append(parts, u.commandRules(t))
	return strings.Join(parts, " ")
}

func (u *aclUser) keyRules() []string {
	if u.allKeys {
		return []string{"~*"}
	}
	out := make([]string, len(u.keys))
	for i, k := range u.keys {
		out[i] = "~" + k
	}
	return out
}

// channelRules renders the channel patterns; reset adds the resetchannels
// that ACL LIST shows before them (channels are denied by default).
func (u *aclUser) channelRules(reset bool) []string {
	if u.allChannels {
		return []string{"&*"}
	}
	var out []string
	if reset {
		out = append(out, "resetchannels")
	}
	for _, ch := range u.channels {
		out = append(out, "&"+ch)
	}
	return out
}

// commandRules renders the commands the user may run as the shorter of
// "+@all" followed by what is denied and "-@all" followed by what is
// allowed, each naming a whole category where every command of it is in
// that list, and a whole command where all its subcommands are.
func (u *aclUser) commandRules(t *command.Table) string {
	if u.allCommands {
		return "+@all"
	}
	allow := commandList(t, u, true)
	deny := commandList(t, u, false)
	if len(deny) < len(allow) {
		return strings.Join(append([]string{"+@all"}, deny...), " ")
	}
	return strings.Join(append([]string{"-@all"}, allow...), " ")
}

// commandList lists the commands whose permission is want, as rules
// ("+@cat", "+cmd", "+cmd|sub"; '-' when want is false).
func commandList(t *command.Table, u *aclUser, want bool) []string {
	sign := "+"
	if !want {
		sign = "-"
	}
	match := func(s *command.Spec) bool { return !s.IsContainer() && u.mayRun(s) == want }
	// Categories every command of which matches, largest first.
	members := map[string][]string{}
	t.Each(func(s *command.Spec) {
		if s.IsContainer() {
			return
		}
		cats := s.Categories
		if s.Policy == command.Gateway {
			cats = []string{command.CategoryGateway}
		}
		for _, c := range cats {
			members[c] = append(members[c], s.Name)
		}
	})
	matching := map[string]bool{}
	t.Each(func(s *command.Spec) {
		if match(s) {
			matching[s.Name] = true
		}
	})
	cats := slices.Sorted(maps.Keys(members))
	slices.SortStableFunc(cats, func(a, b string) int { return len(members[b]) - len(members[a]) })
	covered := map[string]bool{}
	var out []string
	for _, c := range cats {
		all, adds := true, false
		for _, n := range members[c] {
			if !matching[n] {
				all = false
				break
			}
			adds = adds || !covered[n]
		}
		if all && adds {
			out = append(out, sign+"@"+c)
			for _, n := range members[c] {
				covered[n] = true
			}
		}
	}
	// Then whole commands, or their subcommands: a container whose every
	// subcommand matches is named whole.
	subs := map[string][]*command.Spec{}
	var plain []*command.Spec
	t.Each(func(s *command.Spec) {
		if parent, _, ok := strings.Cut(s.Name, "|"); ok {
			subs[parent] = append(subs[parent], s)
		} else if !s.IsContainer() {
			plain = append(plain, s)
		}
	})
	var rest []string
	for _, s := range plain {
		if matching[s.Name] && !covered[s.Name] {
			rest = append(rest, sign+s.Name)
		}
	}
	for parent, list := range subs {
		var names []string
		whole := true
		for _, sub := range list {
			switch {
			case !matching[sub.Name]:
				whole = false
			case !covered[sub.Name]:
				names = append(names, sign+sub.Name)
			}
		}
		if whole && len(names) > 0 {
			rest = append(rest, sign+parent)
		} else {
			rest = append(rest, names...)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}
