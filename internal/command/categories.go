package command

import (
	"errors"
	"strings"
)

// The ACL categories the proxy uses besides Redis's own.
const (
	// CategoryGateway is the category of the proxy's gateway commands
	// (policy Gateway): rate limits, response cache, conversation context.
	// They are in no other category.
	CategoryGateway = "gateway"
	// CategoryDangerous and CategoryAdmin are Redis's categories of
	// commands that administer a server or may harm it.
	CategoryDangerous = "dangerous"
	CategoryAdmin     = "admin"
)

// extraCategories are categories the proxy adds to Redis's own. Through the
// proxy these commands act on every master at once (they are AllMasters),
// wiping the scripts or functions every client relies on, so they are
// classed with FLUSHALL as dangerous.
var extraCategories = map[string][]string{
	"script|flush":     {CategoryDangerous},
	"function|flush":   {CategoryDangerous},
	"function|delete":  {CategoryDangerous},
	"function|restore": {CategoryDangerous},
}

// parseCategories reads the ACL categories element of a COMMAND entry:
// names such as "@read", returned lower case without the '@'.
func parseCategories(v interface{}) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]interface{})
	if !ok {
		return nil, errors.New("not an array")
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		name, ok := e.(string)
		if !ok {
			return nil, errors.New("category is not a string")
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(name, "@")))
	}
	return out, nil
}

func addCategories(s *Spec) {
	for _, c := range extraCategories[s.Name] {
		if !s.InCategory(c) {
			s.Categories = append(s.Categories, c)
		}
	}
}

// InCategory reports whether the command is in the ACL category cat (lower
// case, without '@'). Every command is in "all"; a Gateway command is in
// "gateway" and no other.
func (s *Spec) InCategory(cat string) bool {
	if cat == "all" {
		return true
	}
	if s.Policy == Gateway {
		return cat == CategoryGateway
	}
	for _, c := range s.Categories {
		if c == cat {
			return true
		}
	}
	return false
}

// KeysAreChannels reports whether the command's key positions (as found by
// Keys) are sharded channels, not keys (SSUBSCRIBE, SPUBLISH...): every
// key spec is flagged not_key.
func (s *Spec) KeysAreChannels() bool {
	if len(s.KeySpecs) == 0 {
		return false
	}
	for _, ks := range s.KeySpecs {
		if ks.Flags&KeyNotKey == 0 {
			return false
		}
	}
	return true
}

// Each calls fn for every command and subcommand of the table (a
// container before its subcommands).
func (t *Table) Each(fn func(*Spec)) {
	for _, s := range t.cmds {
		fn(s)
		for _, sub := range s.subs {
			fn(sub)
		}
	}
}

// Find returns the spec of a command ("get") or subcommand ("config|set"),
// by its lower-case canonical name, or nil.
func (t *Table) Find(name string) *Spec {
	parent, sub, isSub := strings.Cut(name, "|")
	s := t.cmds[parent]
	if s == nil || !isSub {
		return s
	}
	return s.subs[sub]
}
