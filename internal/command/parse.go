package command

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Load runs COMMAND on c and parses the reply (see Parse). The client may
// speak RESP2 or RESP3.
func Load(ctx context.Context, c *redis.Client) (*Table, error) {
	reply, err := c.Do(ctx, "COMMAND").Slice()
	if err != nil {
		return nil, fmt.Errorf("command: COMMAND: %w", err)
	}
	return Parse(reply)
}

// Parse builds a table from a COMMAND reply as go-redis returns it (nested
// []interface{} of strings and int64; key specs may be flat key/value
// arrays, as in RESP2, or maps, as in RESP3) and applies the proxy's
// overrides (overrides.go) to it. It needs the key specs of Redis 7.0 or
// later.
func Parse(reply []interface{}) (*Table, error) {
	t := &Table{cmds: make(map[string]*Spec, len(reply))}
	for _, e := range reply {
		s, err := parseCommand(e)
		if err != nil {
			return nil, err
		}
		t.cmds[s.Name] = s
	}
	if len(t.cmds) == 0 {
		return nil, fmt.Errorf("command: empty COMMAND reply")
	}
	return t, nil
}

func parseCommand(e interface{}) (*Spec, error) {
	a, ok := e.([]interface{})
	if !ok || len(a) == 0 {
		return nil, fmt.Errorf("command: COMMAND entry is %T, not an array", e)
	}
	name, ok := a[0].(string)
	if !ok || name == "" {
		return nil, fmt.Errorf("command: COMMAND entry has name %v", a[0])
	}
	name = strings.ToLower(name)
	if len(a) < 10 {
		return nil, fmt.Errorf("command: COMMAND entry %q has %d fields, not 10: Redis 7.0 or later is needed for key specs", name, len(a))
	}
	fail := func(what string, v interface{}) error {
		return fmt.Errorf("command: COMMAND entry %q: bad %s: %v", name, what, v)
	}
	s := &Spec{Name: name}
	arity, ok := a[1].(int64)
	if !ok {
		return nil, fail("arity", a[1])
	}
	s.Arity = int(arity)
	flags, ok := a[2].([]interface{})
	if !ok {
		return nil, fail("flags", a[2])
	}
	for _, f := range flags {
		fs, _ := f.(string)
		for _, n := range flagNames {
			if strings.EqualFold(fs, n.name) {
				s.Flags |= n.f
			}
		}
	}
	cats, err := parseCategories(a[6])
	if err != nil {
		return nil, fail("ACL categories", a[6])
	}
	s.Categories = cats
	if a[7] != nil {
		tips, ok := a[7].([]interface{})
		if !ok {
			return nil, fail("tips", a[7])
		}
		for _, tip := range tips {
			ts, ok := tip.(string)
			if !ok {
				return nil, fail("tips", a[7])
			}
			s.Tips = append(s.Tips, ts)
		}
	}
	if a[8] != nil {
		specs, ok := a[8].([]interface{})
		if !ok {
			return nil, fail("key specs", a[8])
		}
		for _, v := range specs {
			ks, err := parseKeySpec(v)
			if err != nil {
				return nil, fmt.Errorf("command: COMMAND entry %q: key spec: %w", name, err)
			}
			s.KeySpecs = append(s.KeySpecs, ks)
		}
	}
	if len(s.KeySpecs) == 0 {
		// A module command may declare only the legacy (first, last, step).
		first, _ := a[3].(int64)
		last, _ := a[4].(int64)
		step, _ := a[5].(int64)
		if first > 0 {
			ks := KeySpec{Begin: BeginIndex, Index: int(first), Find: FindRange, KeyStep: int(step)}
			if last >= 0 {
				ks.LastKey = int(last - first)
			} else {
				ks.LastKey = int(last)
			}
			s.KeySpecs = append(s.KeySpecs, ks)
		}
	}
	if a[9] != nil {
		subs, ok := a[9].([]interface{})
		if !ok {
			return nil, fail("subcommands", a[9])
		}
		for _, v := range subs {
			sub, err := parseCommand(v)
			if err != nil {
				return nil, err
			}
			parent, short, found := strings.Cut(sub.Name, "|")
			if !found || parent != name || short == "" {
				return nil, fail("subcommand", sub.Name)
			}
			if s.subs == nil {
				s.subs = make(map[string]*Spec, len(subs))
			}
			s.subs[short] = sub
		}
	}
	applyOverride(s)
	addCategories(s)
	prepare(s)
	return s, nil
}

// parseKeySpec parses one key spec: a flat key/value array (RESP2) or a map
// (RESP3), with "flags", "begin_search" and "find_keys".
func parseKeySpec(v interface{}) (KeySpec, error) {
	var ks KeySpec
	m, err := kv(v)
	if err != nil {
		return ks, err
	}
	if fl, ok := m["flags"].([]interface{}); ok {
		for _, f := range fl {
			fs, _ := f.(string)
			for _, n := range keyFlagNames {
				if strings.EqualFold(fs, n.name) {
					ks.Flags |= n.f
				}
			}
		}
	}
	bs, err := kv(m["begin_search"])
	if err != nil {
		return ks, fmt.Errorf("begin_search: %w", err)
	}
	bspec, _ := kv(bs["spec"])
	switch typ, _ := bs["type"].(string); typ {
	case "index":
		ks.Begin = BeginIndex
		ks.Index = intOf(bspec["index"])
	case "keyword":
		ks.Begin = BeginKeyword
		ks.Keyword, _ = bspec["keyword"].(string)
		ks.StartFrom = intOf(bspec["startfrom"])
		if ks.Keyword == "" {
			return ks, fmt.Errorf("begin_search: keyword without a keyword")
		}
	default: // "unknown", or a type of a later Redis version
		ks.Begin = BeginUnknown
	}
	fk, err := kv(m["find_keys"])
	if err != nil {
		return ks, fmt.Errorf("find_keys: %w", err)
	}
	fspec, _ := kv(fk["spec"])
	switch typ, _ := fk["type"].(string); typ {
	case "range":
		ks.Find = FindRange
		ks.LastKey = intOf(fspec["lastkey"])
		ks.KeyStep = intOf(fspec["keystep"])
		ks.Limit = intOf(fspec["limit"])
	case "keynum":
		ks.Find = FindKeyNum
		ks.KeyNumIdx = intOf(fspec["keynumidx"])
		ks.FirstKey = intOf(fspec["firstkey"])
		ks.KeyStep = intOf(fspec["keystep"])
	default:
		ks.Find = FindUnknown
	}
	return ks, nil
}

// kv reads a RESP2 flat key/value array or a RESP3 map.
func kv(v interface{}) (map[string]interface{}, error) {
	out := make(map[string]interface{})
	switch x := v.(type) {
	case []interface{}:
		if len(x)%2 != 0 {
			return nil, fmt.Errorf("odd key/value array of %d elements", len(x))
		}
		for i := 0; i < len(x); i += 2 {
			k, ok := x[i].(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", x[i])
			}
			out[k] = x[i+1]
		}
	case map[interface{}]interface{}:
		for k, val := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			out[ks] = val
		}
	case map[string]interface{}:
		for k, val := range x {
			out[k] = val
		}
	case nil:
	default:
		return nil, fmt.Errorf("%T is not a key/value array", v)
	}
	return out, nil
}

func intOf(v interface{}) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case int:
		return x
	}
	return 0
}
