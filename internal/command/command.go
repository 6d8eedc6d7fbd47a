// Package command is the proxy's command table: for every command the
// cluster knows, where its keys are and how the proxy handles it.
//
// Key positions are learnt from the cluster's own COMMAND reply (the Redis 7
// key specs), never from a hand-written list; Keys follows them the way
// Redis's getKeysUsingKeySpecs (src/db.c) does, so that it agrees with
// COMMAND GETKEYS. What the proxy does with a command (answer it itself,
// route it by slot, split it, fan it out to every master, refuse it...) is
// the proxy's own decision: it lives in the override table in overrides.go,
// applied by Parse. A command not named there is forwarded by the slot of
// its keys.
//
// Lookup and Keys run for every client request: neither allocates.
package command

import (
	"errors"
	"sort"
	"strings"
)

// Flags are the command flags of the COMMAND reply.
type Flags uint32

// The command flags, one per name in the COMMAND reply's flags list. Names
// the package does not know are ignored.
const (
	Write           Flags = 1 << iota // "write": may modify the keyspace
	ReadOnly                          // "readonly": reads keys, never modifies them
	Denyoom                           // "denyoom": refused when maxmemory is reached
	Module                            // "module": implemented by a module
	Admin                             // "admin": administrative
	UsesPubSub                        // "pubsub": a Pub/Sub command
	NoScript                          // "noscript": not allowed in scripts
	MayBlock                          // "blocking": may block the client
	Loading                           // "loading": allowed while the dataset loads
	Stale                             // "stale": allowed on a replica with stale data
	SkipMonitor                       // "skip_monitor": not shown in MONITOR
	SkipSlowlog                       // "skip_slowlog": not logged in the slow log
	Asking                            // "asking": served in an importing slot without ASKING
	Fast                              // "fast": O(1) or O(log N)
	NoAuth                            // "no_auth": allowed before authentication
	MayReplicate                      // "may_replicate": may replicate (Redis 6)
	NoMandatoryKeys                   // "no_mandatory_keys": may legitimately have no key
	NoAsyncLoading                    // "no_async_loading": refused during async loading
	NoMulti                           // "no_multi": not allowed in MULTI
	MovableKeys                       // "movablekeys": key positions depend on the arguments
	AllowBusy                         // "allow_busy": allowed while a script is busy
	Random                            // "random": nondeterministic output (Redis 6)
	SortForScript                     // "sort_for_script": output sorted in scripts (Redis 6)
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{Write, "write"}, {ReadOnly, "readonly"}, {Denyoom, "denyoom"}, {Module, "module"},
	{Admin, "admin"}, {UsesPubSub, "pubsub"}, {NoScript, "noscript"}, {MayBlock, "blocking"},
	{Loading, "loading"}, {Stale, "stale"}, {SkipMonitor, "skip_monitor"},
	{SkipSlowlog, "skip_slowlog"}, {Asking, "asking"}, {Fast, "fast"}, {NoAuth, "no_auth"},
	{MayReplicate, "may_replicate"}, {NoMandatoryKeys, "no_mandatory_keys"},
	{NoAsyncLoading, "no_async_loading"}, {NoMulti, "no_multi"}, {MovableKeys, "movablekeys"},
	{AllowBusy, "allow_busy"}, {Random, "random"}, {SortForScript, "sort_for_script"},
}

// String lists the flags by their COMMAND names, comma-separated.
func (f Flags) String() string {
	var b strings.Builder
	for _, n := range flagNames {
		if f&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
		}
	}
	return b.String()
}

// Policy is how the proxy handles a command.
type Policy uint8

// The policies.
const (
	// Forward routes the command to the master owning the slot of its keys;
	// all its keys must hash to one slot. A keyless command goes to any
	// master.
	Forward Policy = iota
	// Local commands are answered by the proxy itself.
	Local
	// Split commands have several keys that may be in different slots: the
	// proxy splits the key groups (KeyStep arguments each) by slot, sends
	// one command per slot and merges the replies as Merge says.
	Split
	// AllMasters commands are sent to every master; the replies are merged
	// as Merge says.
	AllMasters
	// Blocking commands may block their connection: they need a dedicated
	// backend connection (see Spec.Blocks).
	Blocking
	// Transaction commands (MULTI, EXEC, DISCARD, WATCH, UNWATCH) need a
	// connection pinned to one master for the transaction.
	Transaction
	// PubSub commands put the client in subscribed mode.
	PubSub
	// Scan is SCAN: a cursor over every master.
	Scan
	// Unsupported commands are refused with Reason.
	Unsupported
	// AllNodes commands are sent to every node, replicas included; the
	// replies are merged as Merge says (CONFIG SET: OK only if every node
	// accepted it, else the first error).
	AllNodes
	// Gateway commands (rate limits, response cache, conversation context)
	// are answered by the proxy calling a domain package, which runs one
	// script on one slot through the router. They are not Redis commands:
	// the proxy adds their specs to the table itself (Table.Add).
	Gateway
)

var policyNames = [...]string{"Forward", "Local", "Split", "AllMasters", "Blocking",
	"Transaction", "PubSub", "Scan", "Unsupported", "AllNodes", "Gateway"}

// String returns the policy's Go name.
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return "Policy(" + itoa(int(p)) + ")"
}

// Merge is how the replies of a Split or AllMasters command are combined
// into the one reply for the client. For every kind but AnyOK, an error
// from any node is the client's reply.
type Merge uint8

// The merge kinds.
const (
	// NoMerge: the command has a single reply, passed through.
	NoMerge Merge = iota
	// ByPosition reassembles one array from the per-slot arrays in the order
	// of the keys in the request (MGET).
	ByPosition
	// Sum adds the integer replies (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
	Sum
	// AllOK replies OK once every node did (MSET, FLUSHALL, SCRIPT FLUSH).
	AllOK
	// Concat concatenates the array replies (KEYS).
	Concat
	// Union concatenates the array replies, dropping duplicates
	// (PUBSUB CHANNELS: a channel may have subscribers on several nodes).
	Union
	// FirstReply returns the first node's reply; the nodes are expected to
	// agree (SCRIPT LOAD returns the same SHA1 everywhere).
	FirstReply
	// AndArrays ANDs integer arrays element-wise (SCRIPT EXISTS: a script
	// exists only if every master has it).
	AndArrays
	// AnyOK replies OK if one node did, else the first error (SCRIPT KILL:
	// only the node running the script can kill it).
	AnyOK
	// FirstNonNil returns the first non-nil reply, nil if all are nil
	// (RANDOMKEY: one master may be empty while others are not).
	FirstNonNil
	// SumPairs merges flat [name, count, ...] arrays, summing the counts
	// per name in the order of the request (PUBSUB NUMSUB).
	SumPairs
)

var mergeNames = [...]string{"NoMerge", "ByPosition", "Sum", "AllOK", "Concat", "Union",
	"FirstReply", "AndArrays", "AnyOK", "FirstNonNil", "SumPairs"}

// String returns the merge kind's Go name.
func (m Merge) String() string {
	if int(m) < len(mergeNames) {
		return mergeNames[m]
	}
	return "Merge(" + itoa(int(m)) + ")"
}

// KeyFlags are the flags of a key spec.
type KeyFlags uint16

// The key spec flags, one per name in the key spec's flags list.
const (
	KeyRO            KeyFlags = 1 << iota // "RO": read only
	KeyRW                                 // "RW": read and write
	KeyOW                                 // "OW": overwrite
	KeyRM                                 // "RM": remove
	KeyAccess                             // "access": returns or copies user data
	KeyUpdate                             // "update": updates the value
	KeyInsert                             // "insert": adds data, never modifies or deletes
	KeyDelete                             // "delete": deletes data
	KeyNotKey                             // "not_key": not a key, hashed like one (sharded channels)
	KeyIncomplete                         // "incomplete": may miss some keys
	KeyVariableFlags                      // "variable_flags": flags depend on the arguments
)

var keyFlagNames = []struct {
	f    KeyFlags
	name string
}{
	{KeyRO, "ro"}, {KeyRW, "rw"}, {KeyOW, "ow"}, {KeyRM, "rm"}, {KeyAccess, "access"},
	{KeyUpdate, "update"}, {KeyInsert, "insert"}, {KeyDelete, "delete"},
	{KeyNotKey, "not_key"}, {KeyIncomplete, "incomplete"}, {KeyVariableFlags, "variable_flags"},
}

// BeginKind is how a key spec finds where its keys begin.
type BeginKind uint8

// The begin_search types.
const (
	// BeginUnknown: the spec cannot be followed (SORT's BY, GET and STORE).
	BeginUnknown BeginKind = iota
	// BeginIndex: the keys begin at argument Index.
	BeginIndex
	// BeginKeyword: the keys begin after the argument Keyword, searched
	// from StartFrom (a negative StartFrom searches backwards from the end).
	BeginKeyword
)

// FindKind is how a key spec finds its keys once it knows where they begin.
type FindKind uint8

// The find_keys types.
const (
	// FindUnknown: the keys cannot be found from the spec.
	FindUnknown FindKind = iota
	// FindRange: keys from the beginning to LastKey (relative to it; or,
	// negative, counted from the end of the arguments, or with Limit, the
	// first 1/Limit of the rest), every KeyStep arguments.
	FindRange
	// FindKeyNum: argument KeyNumIdx (relative to the beginning) holds the
	// number of keys, which begin at FirstKey (relative to the beginning),
	// every KeyStep arguments.
	FindKeyNum
)

// KeySpec is one Redis 7 key specification. Positions are indexes into the
// whole request, the command name being 0.
type KeySpec struct {
	Flags KeyFlags // how the command uses the keys; KeyNotKey and KeyIncomplete matter to Keys

	Begin     BeginKind
	Index     int    // BeginIndex
	Keyword   string // BeginKeyword, matched case-insensitively
	StartFrom int    // BeginKeyword

	Find      FindKind
	LastKey   int // FindRange
	Limit     int // FindRange
	KeyNumIdx int // FindKeyNum
	FirstKey  int // FindKeyNum
	KeyStep   int // FindRange and FindKeyNum; less than 1 means 1
}

// Spec describes one command or subcommand.
type Spec struct {
	// Name is the lower-case command name; a subcommand's is the
	// container's and its own joined by "|", as in "config|get".
	Name string
	// Arity is the number of arguments, the name included; negative: at
	// least -Arity. Zero accepts any number.
	Arity int
	// Flags are the command flags.
	Flags Flags
	// Policy is how the proxy handles the command.
	Policy Policy
	// Merge is how the replies of a Split or AllMasters command are merged.
	Merge Merge
	// Reason tells an Unsupported command's client why, as in
	// "-ERR command 'X' is not supported by the proxy: <Reason>".
	Reason string
	// KeyStep is, for Split, the number of arguments per key group: 1 for
	// MGET and DEL, 2 for MSET.
	KeyStep int
	// KeySpecs are the key specs, as in the COMMAND reply.
	KeySpecs []KeySpec
	// Tips are the command tips of the COMMAND reply, such as
	// "request_policy:all_shards".
	Tips []string
	// Categories are the command's ACL categories, lower case and without
	// the '@' ("read", "string", "fast"), from the COMMAND reply plus the
	// proxy's own additions (see categories.go).
	Categories []string

	subs      map[string]*Spec // subcommands by lower-case name, for a container
	keys      keysFunc         // replaces the key specs, like Redis's getkeys_proc
	blocks    func(args [][]byte) bool
	arityErr  error
	mandatory bool // has a real key spec and not NoMandatoryKeys: no key is an error
}

// keysFunc finds the keys of a command whose key specs cannot be followed.
type keysFunc func(s *Spec, args [][]byte, dst []int) ([]int, error)

// Blocks reports whether the request may block its connection, so that it
// needs a dedicated one: true for a Blocking command, except XREAD and
// XREADGROUP without the BLOCK option.
func (s *Spec) Blocks(args [][]byte) bool {
	if s.Policy != Blocking {
		return false
	}
	if s.blocks != nil {
		return s.blocks(args)
	}
	return true
}

// IsContainer reports whether the command has subcommands (CONFIG, CLUSTER,
// CLIENT, OBJECT...).
func (s *Spec) IsContainer() bool { return s.subs != nil }

// ArityOK reports whether n arguments, the command name included, satisfy
// the command's arity.
func (s *Spec) ArityOK(n int) bool {
	switch {
	case s.Arity > 0:
		return n == s.Arity
	case s.Arity < 0:
		return n >= -s.Arity
	}
	return true
}

// Table holds the command specs. Lookup and Keys may be called
// concurrently; Add must not be called concurrently with them.
type Table struct {
	cmds map[string]*Spec
}

// maxName is the longest command or subcommand name Lookup finds (and Add
// accepts): Lookup lower-cases names in a buffer of this size.
const maxName = 64

// Lookup finds the spec for a request: args[0] is the command name, in any
// case. For a container command (CONFIG, CLUSTER, CLIENT, OBJECT, XINFO,
// MEMORY, SCRIPT, FUNCTION, COMMAND...) given a subcommand (len(args) > 1),
// it returns the subcommand's spec. It returns nil for an unknown command or
// subcommand. It does not allocate.
func (t *Table) Lookup(args [][]byte) *Spec {
	if len(args) == 0 {
		return nil
	}
	s := find(t.cmds, args[0])
	if s == nil || s.subs == nil || len(args) == 1 {
		return s
	}
	return find(s.subs, args[1])
}

func find(m map[string]*Spec, name []byte) *Spec {
	upper := false
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return m[string(name)]
	}
	if len(name) > maxName {
		return nil
	}
	var buf [maxName]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m[string(buf[:len(name)])]
}

// Names returns the names of every command and subcommand ("config|get"),
// sorted.
func (t *Table) Names() []string {
	var names []string
	for name, s := range t.cmds {
		names = append(names, name)
		for _, sub := range s.subs {
			names = append(names, sub.Name)
		}
	}
	sort.Strings(names)
	return names
}

// Add adds s to the table, or replaces the command of the same name: the
// proxy's own commands (gateway commands such as CL.THROTTLE) go through
// the same lookup and key extraction as the cluster's. A name with a "|"
// adds a subcommand, creating its container if needed. The table keeps s;
// Add lower-cases its name. It panics on an empty name or one longer than
// 64 bytes. Add must not run concurrently with Lookup. For a command whose
// first argument is its only key:
//
//	t.Add(&command.Spec{Name: "cl.throttle", Arity: -5, Flags: command.Write,
//		KeySpecs: []command.KeySpec{{Flags: command.KeyRW,
//			Begin: command.BeginIndex, Index: 1, Find: command.FindRange}}})
func (t *Table) Add(s *Spec) {
	s.Name = strings.ToLower(s.Name)
	parent, sub, isSub := strings.Cut(s.Name, "|")
	if parent == "" || (isSub && sub == "") || len(parent) > maxName || len(sub) > maxName {
		panic("command: Add: invalid command name " + quote(s.Name))
	}
	prepare(s)
	if t.cmds == nil {
		t.cmds = make(map[string]*Spec)
	}
	if !isSub {
		if old := t.cmds[parent]; old != nil && s.subs == nil {
			s.subs = old.subs
		}
		t.cmds[parent] = s
		return
	}
	p := t.cmds[parent]
	if p == nil {
		p = &Spec{Name: parent, Arity: -2}
		prepare(p)
		t.cmds[parent] = p
	}
	if p.subs == nil {
		p.subs = make(map[string]*Spec)
	}
	p.subs[sub] = s
}

// prepare computes what Lookup and Keys need from the exported fields.
func prepare(s *Spec) {
	s.arityErr = errors.New("wrong number of arguments for '" + s.Name + "' command")
	realKeys := false
	for i := range s.KeySpecs {
		ks := &s.KeySpecs[i]
		if ks.KeyStep < 1 {
			ks.KeyStep = 1
		}
		if ks.Limit < 0 {
			ks.Limit = 0
		}
		if ks.Flags&KeyNotKey == 0 {
			realKeys = true
		}
	}
	s.mandatory = realKeys && s.Flags&NoMandatoryKeys == 0
}

func quote(s string) string { return "'" + s + "'" }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
