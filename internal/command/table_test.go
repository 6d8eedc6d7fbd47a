package command

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redis70Names are the commands and subcommands of Redis 7.0 (COMMAND LIST
// of 7.0.15).
var redis70Names = strings.Fields(`
acl acl|cat acl|deluser acl|dryrun acl|genpass acl|getuser acl|help acl|list acl|load
acl|log acl|save acl|setuser acl|users acl|whoami append asking auth bgrewriteaof bgsave
bitcount bitfield bitfield_ro bitop bitpos blmove blmpop blpop brpop brpoplpush bzmpop
bzpopmax bzpopmin client client|caching client|getname client|getredir client|help
client|id client|info client|kill client|list client|no-evict client|pause client|reply
client|setname client|tracking client|trackinginfo client|unblock client|unpause cluster
cluster|addslots cluster|addslotsrange cluster|bumpepoch cluster|count-failure-reports
cluster|countkeysinslot cluster|delslots cluster|delslotsrange cluster|failover
cluster|flushslots cluster|forget cluster|getkeysinslot cluster|help cluster|info
cluster|keyslot cluster|links cluster|meet cluster|myid cluster|nodes cluster|replicas
cluster|replicate cluster|reset cluster|saveconfig cluster|set-config-epoch
cluster|setslot cluster|shards cluster|slaves cluster|slots command command|count
command|docs command|getkeys command|getkeysandflags command|help command|info
command|list config config|get config|help config|resetstat config|rewrite config|set copy
dbsize debug decr decrby del discard dump echo eval eval_ro evalsha evalsha_ro exec exists
expire expireat expiretime failover fcall fcall_ro flushall flushdb function
function|delete function|dump function|flush function|help function|kill function|list
function|load function|restore function|stats geoadd geodist geohash geopos georadius
georadius_ro georadiusbymember georadiusbymember_ro geosearch geosearchstore get getbit
getdel getex getrange getset hdel hello hexists hget hgetall hincrby hincrbyfloat hkeys
hlen hmget hmset hrandfield hscan hset hsetnx hstrlen hvals incr incrby incrbyfloat info
keys lastsave latency latency|doctor latency|graph latency|help latency|histogram
latency|history latency|latest latency|reset lcs lindex linsert llen lmove lmpop lolwut
lpop lpos lpush lpushx lrange lrem lset ltrim memory memory|doctor memory|help
memory|malloc-stats memory|purge memory|stats memory|usage mget migrate module module|help
module|list module|load module|loadex module|unload monitor move mset msetnx multi object
object|encoding object|freq object|help object|idletime object|refcount persist pexpire
pexpireat pexpiretime pfadd pfcount pfdebug pfmerge pfselftest ping psetex psubscribe
psync pttl publish pubsub pubsub|channels pubsub|help pubsub|numpat pubsub|numsub
pubsub|shardchannels pubsub|shardnumsub punsubscribe quit randomkey readonly readwrite
rename renamenx replconf replicaof reset restore restore-asking role rpop rpoplpush rpush
rpushx sadd save scan scard script script|debug script|exists script|flush script|help
script|kill script|load sdiff sdiffstore select set setbit setex setnx setrange shutdown
sinter sintercard sinterstore sismember slaveof slowlog slowlog|get slowlog|help
slowlog|len slowlog|reset smembers smismember smove sort sort_ro spop spublish srandmember
srem sscan ssubscribe strlen subscribe substr sunion sunionstore sunsubscribe swapdb sync
time touch ttl type unlink unsubscribe unwatch wait watch xack xadd xautoclaim xclaim xdel
xgroup xgroup|create xgroup|createconsumer xgroup|delconsumer xgroup|destroy xgroup|help
xgroup|setid xinfo xinfo|consumers xinfo|groups xinfo|help xinfo|stream xlen xpending
xrange xread xreadgroup xrevrange xsetid xtrim zadd zcard zcount zdiff zdiffstore zincrby
zinter zintercard zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrandmember zrange
zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex zremrangebyrank
zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion
zunionstore
`)

// laterNames are the names in overrides that Redis 7.0 does not have.
var laterNames = []string{"client|setinfo", "client|no-touch", "cluster|myshardid", "waitaof"}

func TestParseLive(t *testing.T) {
	names := table.Names()
	for _, n := range redis70Names {
		if _, ok := slices.BinarySearch(names, n); !ok {
			t.Errorf("%q missing from the table", n)
		}
	}
	list, err := rdb.Do(context.Background(), "COMMAND", "LIST").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(list)
	if !slices.Equal(list, names) {
		t.Errorf("Names() differ from COMMAND LIST:\n got %v\nwant %v", names, list)
	}
	for _, n := range names {
		parent, sub, ok := strings.Cut(n, "|")
		args := [][]byte{[]byte(parent)}
		if ok {
			args = append(args, []byte(sub))
		}
		s := table.Lookup(args)
		if s == nil || s.Name != n {
			t.Errorf("Lookup(%q) = %v", n, s)
		}
	}

	get := table.Lookup(bargs("get"))
	want := KeySpec{Flags: KeyRO | KeyAccess, Begin: BeginIndex, Index: 1, Find: FindRange, KeyStep: 1}
	if get.Arity != 2 || get.Flags != ReadOnly|Fast || len(get.KeySpecs) != 1 || get.KeySpecs[0] != want {
		t.Errorf("get = %+v", get)
	}
	xread := table.Lookup(bargs("xread"))
	want = KeySpec{Flags: KeyRO | KeyAccess, Begin: BeginKeyword, Keyword: "STREAMS", StartFrom: 1,
		Find: FindRange, LastKey: -1, KeyStep: 1, Limit: 2}
	if xread.Flags != ReadOnly|MayBlock|MovableKeys || len(xread.KeySpecs) != 1 || xread.KeySpecs[0] != want {
		t.Errorf("xread = %+v", xread)
	}
	eval := table.Lookup(bargs("eval"))
	want = KeySpec{Flags: KeyRW | KeyAccess | KeyUpdate, Begin: BeginIndex, Index: 2, Find: FindKeyNum,
		KeyNumIdx: 0, FirstKey: 1, KeyStep: 1}
	if eval.Flags&NoMandatoryKeys == 0 || len(eval.KeySpecs) != 1 || eval.KeySpecs[0] != want {
		t.Errorf("eval = %+v", eval)
	}
	if s := table.Lookup(bargs("set")); s.KeySpecs[0].Flags&KeyVariableFlags == 0 {
		t.Errorf("set key spec flags = %v", s.KeySpecs[0].Flags)
	}
	if s := table.Lookup(bargs("spublish")); s.KeySpecs[0].Flags != KeyNotKey {
		t.Errorf("spublish key spec flags = %v", s.KeySpecs[0].Flags)
	}
	if s := table.Lookup(bargs("sort")); len(s.KeySpecs) != 3 || s.KeySpecs[2].Begin != BeginUnknown || s.KeySpecs[2].Find != FindUnknown {
		t.Errorf("sort key specs = %+v", s.KeySpecs)
	}
	if s := table.Lookup(bargs("dbsize")); !slices.Contains(s.Tips, "request_policy:all_shards") {
		t.Errorf("dbsize tips = %v", s.Tips)
	}
	if s := table.Lookup(bargs("config", "get")); s.Name != "config|get" || s.Arity != -3 || s.Flags&Admin == 0 {
		t.Errorf("config|get = %+v", s)
	}
}

// TestParseRESP3 checks that a RESP3 COMMAND reply (maps for key specs)
// gives the same table.
func TestParseRESP3(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, Protocol: 3, DisableIdentity: true})
	defer c.Close()
	t3, err := Load(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(t3.Names(), table.Names()) {
		t.Fatalf("RESP3 names differ")
	}
	for _, n := range table.Names() {
		a, b := dump(lookupName(table, n)), dump(lookupName(t3, n))
		if a != b {
			t.Errorf("RESP2 %s\nRESP3 %s", a, b)
		}
	}
}

func lookupName(t *Table, name string) *Spec {
	parent, sub, ok := strings.Cut(name, "|")
	if ok {
		return t.Lookup(bargs(parent, sub))
	}
	return t.Lookup(bargs(parent))
}

func dump(s *Spec) string {
	return fmt.Sprintf("%s %d %s %v %v %d %q %+v %q %v", s.Name, s.Arity, s.Flags, s.Policy, s.Merge,
		s.KeyStep, s.Reason, s.KeySpecs, s.Tips, s.keys != nil)
}

func TestParseErrors(t *testing.T) {
	good := func() []interface{} {
		return []interface{}{"get", int64(2), []interface{}{"readonly"}, int64(1), int64(1), int64(1),
			[]interface{}{}, []interface{}{},
			[]interface{}{[]interface{}{"flags", []interface{}{"RO"},
				"begin_search", []interface{}{"type", "index", "spec", []interface{}{"index", int64(1)}},
				"find_keys", []interface{}{"type", "range", "spec", []interface{}{"lastkey", int64(0), "keystep", int64(1), "limit", int64(0)}}}},
			[]interface{}{}}
	}
	if _, err := Parse([]interface{}{good()}); err != nil {
		t.Fatalf("good entry: %v", err)
	}
	cases := map[string]func(e []interface{}) interface{}{
		"not an array": func(e []interface{}) interface{} { return "get" },
		"redis 6":      func(e []interface{}) interface{} { return e[:7] },
		"no name":      func(e []interface{}) interface{} { e[0] = int64(1); return e },
		"arity":        func(e []interface{}) interface{} { e[1] = "2"; return e },
		"flags":        func(e []interface{}) interface{} { e[2] = "readonly"; return e },
		"key specs":    func(e []interface{}) interface{} { e[8] = "x"; return e },
		"odd key spec": func(e []interface{}) interface{} { e[8] = []interface{}{[]interface{}{"flags"}}; return e },
		"subcommand":   func(e []interface{}) interface{} { e[9] = []interface{}{good()}; return e },
	}
	for name, mut := range cases {
		if _, err := Parse([]interface{}{mut(good())}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Parse(nil); err == nil {
		t.Errorf("empty reply: no error")
	}
}

// TestOverridesCoverRedis70 catches typos in the override table: every
// name is a Redis 7.0 command or a known later one.
func TestOverridesCoverRedis70(t *testing.T) {
	for name, o := range overrides {
		if lookupName(table, name) == nil && !slices.Contains(laterNames, name) {
			t.Errorf("override %q names no Redis 7.0 command", name)
		}
		if (o.policy == Unsupported) != (o.reason != "") {
			t.Errorf("override %q: policy %v with reason %q", name, o.policy, o.reason)
		}
		if (o.policy == Split) != (o.keyStep > 0) {
			t.Errorf("override %q: policy %v with key step %d", name, o.policy, o.keyStep)
		}
		if (o.policy == Split || o.policy == AllMasters || o.policy == AllNodes) != (o.merge != NoMerge) {
			t.Errorf("override %q: policy %v with merge %v", name, o.policy, o.merge)
		}
	}
	for _, n := range laterNames {
		if lookupName(table, n) != nil {
			t.Errorf("%q is in Redis 7.0 after all", n)
		}
	}
}

// TestTipsAgree checks the policies against Redis's own request_policy
// tips: what Redis says goes to all shards or nodes is never Forward, and
// what it says spans shards is split (or deliberately kept in one slot).
func TestTipsAgree(t *testing.T) {
	for _, n := range table.Names() {
		s := lookupName(table, n)
		for _, tip := range s.Tips {
			switch tip {
			case "request_policy:all_shards", "request_policy:all_nodes":
				if s.Policy == Forward {
					t.Errorf("%s has tip %s but is Forward", n, tip)
				}
			case "request_policy:multi_shard":
				if s.Policy != Split && n != "msetnx" {
					t.Errorf("%s has tip %s but is %v", n, tip, s.Policy)
				}
			}
		}
	}
}

func TestPolicies(t *testing.T) {
	cases := []struct {
		args    string
		policy  Policy
		merge   Merge
		keyStep int
	}{
		{"GET", Forward, NoMerge, 0},
		{"set", Forward, NoMerge, 0},
		{"publish", Forward, NoMerge, 0},
		{"spublish", Forward, NoMerge, 0},
		{"sort", Forward, NoMerge, 0},
		{"msetnx", Forward, NoMerge, 0},
		{"eval", Forward, NoMerge, 0},
		{"config get", Forward, NoMerge, 0},
		{"object encoding", Forward, NoMerge, 0},
		{"ping", Local, NoMerge, 0},
		{"select", Local, NoMerge, 0},
		{"client setname", Local, NoMerge, 0},
		{"cluster slots", Local, NoMerge, 0},
		{"cluster keyslot", Local, NoMerge, 0},
		{"mget", Split, ByPosition, 1},
		{"mset", Split, AllOK, 2},
		{"del", Split, Sum, 1},
		{"unlink", Split, Sum, 1},
		{"exists", Split, Sum, 1},
		{"touch", Split, Sum, 1},
		{"dbsize", AllMasters, Sum, 0},
		{"keys", AllMasters, Concat, 0},
		{"flushall", AllMasters, AllOK, 0},
		{"script load", AllMasters, FirstReply, 0},
		{"script exists", AllMasters, AndArrays, 0},
		{"script flush", AllMasters, AllOK, 0},
		{"function load", AllMasters, FirstReply, 0},
		{"blpop", Blocking, NoMerge, 0},
		{"xread", Blocking, NoMerge, 0},
		{"wait", Blocking, NoMerge, 0},
		{"multi", Transaction, NoMerge, 0},
		{"watch", Transaction, NoMerge, 0},
		{"subscribe", PubSub, NoMerge, 0},
		{"ssubscribe", PubSub, NoMerge, 0},
		{"scan", Scan, NoMerge, 0},
		{"migrate", Unsupported, NoMerge, 0},
		{"monitor", Local, NoMerge, 0},
		{"cluster setslot", Unsupported, NoMerge, 0},
		{"client kill", Local, NoMerge, 0},
		{"client unblock", Local, NoMerge, 0},
	}
	for _, c := range cases {
		s := table.Lookup(bargs(strings.Fields(c.args)...))
		if s == nil {
			t.Errorf("%s: not found", c.args)
			continue
		}
		if s.Policy != c.policy || s.Merge != c.merge || s.KeyStep != c.keyStep {
			t.Errorf("%s: %v %v %d, want %v %v %d", c.args, s.Policy, s.Merge, s.KeyStep, c.policy, c.merge, c.keyStep)
		}
		if s.Policy == Unsupported && s.Reason == "" {
			t.Errorf("%s: unsupported without a reason", c.args)
		}
	}
}

// TestPolicyReport logs the non-Forward policies (go test -v -run Report).
func TestPolicyReport(t *testing.T) {
	by := map[Policy][]string{}
	for _, n := range table.Names() {
		s := lookupName(table, n)
		if s.Policy != Forward {
			e := n
			if s.Merge != NoMerge {
				e += "(" + s.Merge.String() + ")"
			}
			by[s.Policy] = append(by[s.Policy], e)
		}
	}
	for p := Local; p <= Unsupported; p++ {
		t.Logf("%v: %s", p, strings.Join(by[p], " "))
	}
}

func TestLookup(t *testing.T) {
	cases := []struct {
		args []string
		want string // "" for nil
	}{
		{[]string{"get", "k"}, "get"},
		{[]string{"GET", "k"}, "get"},
		{[]string{"gEt"}, "get"},
		{[]string{"CONFIG", "GET", "x"}, "config|get"},
		{[]string{"config", "gEt"}, "config|get"},
		{[]string{"CONFIG"}, "config"},
		{[]string{"config", "nosuch"}, ""},
		{[]string{"cluster", "INFO"}, "cluster|info"},
		{[]string{"object", "encoding", "k"}, "object|encoding"},
		{[]string{"XINFO", "STREAM", "s"}, "xinfo|stream"},
		{[]string{"memory", "usage", "k"}, "memory|usage"},
		{[]string{"command"}, "command"},
		{[]string{"command", "getkeys", "get", "k"}, "command|getkeys"},
		{[]string{"script", "load", "x"}, "script|load"},
		{[]string{"function", "list"}, "function|list"},
		{[]string{"restore-asking"}, "restore-asking"},
		{[]string{"nosuch"}, ""},
		{[]string{""}, ""},
		{[]string{strings.Repeat("A", 100)}, ""},
		{[]string{"get\x00"}, ""},
		{[]string{"config|get"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		s := table.Lookup(bargs(c.args...))
		got := ""
		if s != nil {
			got = s.Name
		}
		if got != c.want {
			t.Errorf("Lookup(%q) = %q, want %q", c.args, got, c.want)
		}
	}
	if s := table.Lookup(bargs("config")); !s.IsContainer() || table.Lookup(bargs("get")).IsContainer() {
		t.Errorf("IsContainer wrong")
	}
}

func TestAdd(t *testing.T) {
	tb, err := Parse(rawCommand(t))
	if err != nil {
		t.Fatal(err)
	}
	tb.Add(&Spec{Name: "CL.THROTTLE", Arity: -5, Flags: Write, Policy: Forward,
		KeySpecs: []KeySpec{{Flags: KeyRW, Begin: BeginIndex, Index: 1, Find: FindRange}}})
	tb.Add(&Spec{Name: "ctx.append", Arity: -3, Flags: Write,
		KeySpecs: []KeySpec{{Flags: KeyRW, Begin: BeginIndex, Index: 1, Find: FindRange, LastKey: -2, KeyStep: 1}}})
	tb.Add(&Spec{Name: "rl|acquire", Arity: 3, Policy: Local})
	s := tb.Lookup(bargs("cl.throttle", "k", "1", "2", "3"))
	if s == nil || s.Name != "cl.throttle" {
		t.Fatalf("cl.throttle: %v", s)
	}
	keys, err := s.Keys(bargs("CL.THROTTLE", "k", "1", "2", "3"), nil)
	if err != nil || !slices.Equal(keys, []int{1}) {
		t.Errorf("cl.throttle keys = %v, %v", keys, err)
	}
	if _, err := s.Keys(bargs("CL.THROTTLE", "k"), nil); err == nil || err.Error() != "wrong number of arguments for 'cl.throttle' command" {
		t.Errorf("cl.throttle arity error = %v", err)
	}
	s = tb.Lookup(bargs("CTX.APPEND", "a", "b", "v"))
	if keys, err := s.Keys(bargs("ctx.append", "a", "b", "v"), nil); err != nil || !slices.Equal(keys, []int{1, 2}) {
		t.Errorf("ctx.append keys = %v, %v", keys, err)
	}
	if s := tb.Lookup(bargs("rl", "ACQUIRE", "x")); s == nil || s.Name != "rl|acquire" || s.Policy != Local {
		t.Errorf("rl|acquire = %v", s)
	}
	if s := tb.Lookup(bargs("rl")); s == nil || !s.IsContainer() {
		t.Errorf("rl = %v", s)
	}
	// Replacing a container keeps its subcommands.
	tb.Add(&Spec{Name: "config", Arity: -2, Policy: Unsupported, Reason: "x"})
	if s := tb.Lookup(bargs("config", "get", "x")); s == nil || s.Name != "config|get" {
		t.Errorf("config|get after replacing config: %v", s)
	}
	for _, name := range []string{"", "|x", "x|", strings.Repeat("x", 65)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%q) did not panic", name)
				}
			}()
			tb.Add(&Spec{Name: name})
		}()
	}
	if tb.Lookup(bargs("cl.throttle")) == nil || table.Lookup(bargs("cl.throttle")) != nil {
		t.Errorf("Add leaked into the shared table")
	}
}

func TestBlocks(t *testing.T) {
	cases := []struct {
		args string
		want bool
	}{
		{"blpop a 0", true},
		{"bzmpop 0 1 a min", true},
		{"wait 1 0", true},
		{"get a", false},
		{"xread streams a 0", false},
		{"xread count 1 streams a 0", false},
		{"xread COUNT 1 BLOCK 0 STREAMS a $", true},
		{"xread block 100 streams a 0", true},
		{"xread streams block 0", false}, // "block" is a stream name here
		{"xreadgroup group g c streams s >", false},
		{"xreadgroup group block c streams s >", false},
		{"xreadgroup group g c noack block 5 streams s >", true},
		{"xreadgroup group g c count 5 streams s >", false},
	}
	for _, c := range cases {
		args := bargs(strings.Fields(c.args)...)
		if got := table.Lookup(args).Blocks(args); got != c.want {
			t.Errorf("Blocks(%s) = %v", c.args, got)
		}
	}
}

func TestStrings(t *testing.T) {
	if s := (ReadOnly | Fast).String(); s != "readonly,fast" {
		t.Errorf("flags = %q", s)
	}
	if Split.String() != "Split" || Policy(200).String() != "Policy(200)" {
		t.Errorf("policy strings")
	}
	if AndArrays.String() != "AndArrays" || Merge(200).String() != "Merge(200)" {
		t.Errorf("merge strings")
	}
}

func rawCommand(t testing.TB) []interface{} {
	t.Helper()
	v, err := rdb.Do(context.Background(), "COMMAND").Slice()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func bargs(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}
