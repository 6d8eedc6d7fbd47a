package command

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// parseArgs splits a test command line on spaces; "" is an empty argument
// and \0 a NUL byte.
func parseArgs(line string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(line) {
		if f == `""` {
			f = ""
		}
		out = append(out, []byte(strings.ReplaceAll(f, `\0`, "\x00")))
	}
	return out
}

func ifaces(args [][]byte) []interface{} {
	out := make([]interface{}, 0, len(args)+2)
	out = append(out, "COMMAND", "GETKEYS")
	for _, a := range args {
		out = append(out, string(a))
	}
	return out
}

func keyNames(args [][]byte, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = string(args[j])
	}
	return out
}

const errNoKeyArgs = "ERR The command has no key arguments"

// TestKeysMatchGetKeys compares Keys with the server's COMMAND GETKEYS on
// a broad set of requests. Where GETKEYS fails, Keys must fail. Where Keys
// fails and GETKEYS does not (EVAL's bad key counts, which GETKEYS reads
// with atoi), running the command itself on the server must fail. Commands
// without keys (GETKEYS: "no key arguments") must have none, except the
// sharded channels (want).
func TestKeysMatchGetKeys(t *testing.T) {
	cases := []struct {
		line string
		want []int // for commands GETKEYS says have no keys
		// getkeysQuirk: GETKEYS fails but the command is valid and has
		// the keys in want (Redis Cluster finds them from the legacy
		// first/last/step, which the proxy needs to route it).
		getkeysQuirk bool
	}{
		{line: "GET k"},
		{line: "get k"},
		{line: "SET k v"},
		{line: "SET k v GET"},
		{line: "SET k v EX 10 NX GET"},
		{line: "GETEX k EX 10"},
		{line: "GETDEL k"},
		{line: "APPEND k v"},
		{line: "MGET a b c"},
		{line: "MSET a 1 b 2 c 3"},
		{line: "MSET a 1 b"},
		{line: "MSETNX a 1 b 2"},
		{line: "DEL a b c"},
		{line: "UNLINK a"},
		{line: "EXISTS a b a"},
		{line: "TOUCH a b"},
		{line: "EVAL s 0"},
		{line: "EVAL s 0 a b"},
		{line: "EVAL s 2 a b c"},
		{line: "EVAL s 2 a b"},
		{line: "EVAL s 3 a b"},
		{line: "EVAL s -1 a"},
		{line: "EVAL s x a"},
		{line: "EVAL s 01 a"},
		{line: "EVAL s 99999999999999999999999 a"},
		{line: "EVAL_RO s 1 a"},
		{line: "EVALSHA 0123456789012345678901234567890123456789 1 a"},
		{line: "EVALSHA_RO 0123456789012345678901234567890123456789 2 a b"},
		{line: "EVALSHA 0123456789012345678901234567890123456789 2 a"},
		{line: "FCALL f 0"},
		{line: "FCALL f 2 a b x"},
		{line: "FCALL f -2 a"},
		{line: "FCALL_RO f 1 a"},
		{line: "XREAD COUNT 1 STREAMS a b 0 0"},
		{line: "XREAD BLOCK 0 STREAMS a 0"},
		{line: "XREAD STREAMS a b 0"},
		{line: "XREAD streams a 0"},
		{line: "XREAD COUNT 1 a b"},
		{line: "XREADGROUP GROUP g c STREAMS s >"},
		{line: "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS s t > >"},
		{line: "XREADGROUP GROUP g c BLOCK 10 STREAMS s t u > > >"},
		{line: "ZUNIONSTORE dst 2 a b WEIGHTS 1 2"},
		{line: "ZUNIONSTORE dst 0 a"},
		{line: "ZUNIONSTORE dst 3 a b"},
		{line: "ZUNIONSTORE dst -1 a"},
		{line: "ZINTERSTORE dst 1 a"},
		{line: "ZDIFFSTORE dst 2 a b"},
		{line: "ZUNION 2 a b"},
		{line: "ZUNION 0 a"},
		{line: "ZUNION x a"},
		{line: "ZINTER 2 a b WITHSCORES"},
		{line: "ZDIFF 1 a"},
		{line: "ZINTERCARD 2 a b LIMIT 1"},
		{line: "ZINTERCARD 0 a"},
		{line: "LMPOP 2 a b LEFT"},
		{line: "LMPOP 1 a RIGHT COUNT 2"},
		{line: "LMPOP 5 a LEFT"},
		{line: "BLMPOP 0 2 a b LEFT"},
		{line: "BLMPOP 0 0 a LEFT"},
		{line: "BZMPOP 1 1 a MIN"},
		{line: "ZMPOP 2 a b MAX"},
		{line: "SINTERCARD 2 a b"},
		{line: "SINTERCARD 2 a b LIMIT 5"},
		{line: "SINTERCARD 3 a b"},
		{line: "GEORADIUS k 0 0 1 km STORE d"},
		{line: "GEORADIUS k 0 0 1 km STOREDIST d"},
		{line: "GEORADIUS k 0 0 1 km STORE d STOREDIST e"},
		{line: "GEORADIUS k 0 0 1 km"},
		{line: "GEORADIUS k 0 0 1 km STORE"},
		{line: `GEORADIUS k 0 0 1 km store\0x d`},
		{line: "GEORADIUS_RO k 0 0 1 km"},
		{line: "GEORADIUSBYMEMBER k m 1 km STORE d"},
		{line: "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km"},
		{line: "GEOSEARCH s FROMMEMBER m BYRADIUS 1 km"},
		{line: "SORT k"},
		{line: "SORT k STORE d"},
		{line: "SORT k BY w_* GET o_* LIMIT 0 1 STORE d ALPHA"},
		{line: "SORT k STORE a STORE b"},
		{line: "SORT k GET store STORE d"},
		{line: "SORT k LIMIT store 1 STORE d"},
		{line: "SORT k STORE"},
		{line: "SORT_RO k BY x GET y"},
		{line: "OBJECT ENCODING k"},
		{line: "OBJECT FREQ k"},
		{line: "MEMORY USAGE k SAMPLES 5"},
		{line: "XINFO STREAM s FULL"},
		{line: "XINFO GROUPS s"},
		{line: "XINFO CONSUMERS s g"},
		{line: "XGROUP CREATE s g $ MKSTREAM"},
		{line: "XGROUP DESTROY s g"},
		{line: "BITOP AND d a b"},
		{line: "BITOP NOT d a"},
		{line: "BITFIELD k GET u8 0"},
		{line: "BITFIELD_RO k GET u8 0"},
		{line: "PFMERGE d a b"},
		{line: "PFMERGE d", want: []int{1}, getkeysQuirk: true},
		{line: "PFCOUNT a b"},
		{line: "LMOVE a b LEFT RIGHT"},
		{line: "BLMOVE a b LEFT RIGHT 0"},
		{line: "RPOPLPUSH a b"},
		{line: "BRPOPLPUSH a b 0"},
		{line: "BLPOP a b 0"},
		{line: "BRPOP a 0"},
		{line: "BZPOPMIN a b 0"},
		{line: "RENAME a b"},
		{line: "RENAMENX a b"},
		{line: "COPY a b"},
		{line: "COPY a b DB 1 REPLACE"},
		{line: "SMOVE a b m"},
		{line: "LCS a b"},
		{line: "SDIFFSTORE d a b"},
		{line: "SUNIONSTORE d a"},
		{line: "SINTER a b"},
		{line: "ZRANGESTORE d s 0 -1"},
		{line: "WATCH a b"},
		{line: "HSET h f v"},
		{line: "XADD s * f v"},
		{line: "RESTORE k 0 payload"},
		{line: "DUMP k"},
		{line: "PFDEBUG GETREG k"},
		{line: "MIGRATE h 1 k 0 10"},
		{line: `MIGRATE h 1 "" 0 10 KEYS a b`},
		{line: `MIGRATE h 1 "" 0 10 AUTH keys KEYS a`},
		{line: `MIGRATE h 1 "" 0 10 COPY REPLACE AUTH2 u p KEYS a b c`},
		{line: "MIGRATE h 1 k 0 10 KEYS a"},
		{line: `MIGRATE h keys "" 0 10 x`},
		{line: "GET"},
		{line: "GET a b"},
		{line: "OBJECT ENCODING"},
		{line: "PING", want: []int{}},
		{line: "PING x", want: []int{}},
		{line: "PUBLISH ch m", want: []int{}},
		{line: "CONFIG GET x", want: []int{}},
		{line: "SCAN 0", want: []int{}},
		{line: "SPUBLISH ch m", want: []int{1}},
		{line: "SSUBSCRIBE a b", want: []int{1, 2}},
		{line: "SUNSUBSCRIBE a", want: []int{1}},
		{line: "SUNSUBSCRIBE", want: []int{}},
	}
	ctx := context.Background()
	for _, c := range cases {
		args := parseArgs(c.line)
		s := table.Lookup(args)
		if s == nil {
			t.Errorf("%s: no spec", c.line)
			continue
		}
		keys, err := s.Keys(args, nil)
		ref, refErr := rdb.Do(ctx, ifaces(args)...).StringSlice()
		switch {
		case c.getkeysQuirk:
			if refErr == nil {
				t.Errorf("%s: GETKEYS = %q: the quirk is gone", c.line, ref)
			}
			if err != nil || !slices.Equal(keys, c.want) {
				t.Errorf("%s: Keys = %v, %v; want %v", c.line, keys, err, c.want)
			}
			if err := rdb.Do(ctx, toIfaces(args)...).Err(); err != nil {
				t.Errorf("%s: the command fails: %v", c.line, err)
			}
		case refErr != nil && refErr.Error() == errNoKeyArgs && c.want == nil:
			t.Errorf("%s: GETKEYS says no key arguments; the case needs want", c.line)
		case refErr != nil && c.want != nil && (refErr.Error() == errNoKeyArgs || len(args) == 1):
			if err != nil || !slices.Equal(keys, c.want) {
				t.Errorf("%s: Keys = %v, %v; want %v", c.line, keys, err, c.want)
			}
		case c.want != nil:
			t.Errorf("%s: GETKEYS = %v, %v; want \"no key arguments\"", c.line, ref, refErr)
		case refErr != nil:
			if err == nil {
				t.Errorf("%s: GETKEYS fails (%v) but Keys = %v", c.line, refErr, keys)
			}
		case err != nil:
			// GETKEYS succeeds: then the command itself must fail.
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			cmdErr := rdb.Do(cctx, toIfaces(args)...).Err()
			cancel()
			if cmdErr == nil || errors.Is(cmdErr, redis.Nil) {
				t.Errorf("%s: Keys fails (%v), GETKEYS = %v and the command succeeds", c.line, err, ref)
			} else {
				t.Logf("%s: Keys: %v; GETKEYS %q; the command: %v", c.line, err, ref, cmdErr)
			}
		default:
			if got := keyNames(args, keys); !slices.Equal(got, ref) {
				t.Errorf("%s: Keys = %q, GETKEYS = %q", c.line, got, ref)
			}
		}
	}
}

func toIfaces(args [][]byte) []interface{} {
	out := make([]interface{}, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

// TestKeysErrors checks the messages of Keys' errors.
func TestKeysErrors(t *testing.T) {
	cases := map[string]string{
		"EVAL s -1 a":       "Number of keys can't be negative",
		"EVAL s 2 a":        "Number of keys can't be greater than number of args",
		"EVAL s 1x a":       "value is not an integer or out of range",
		"ZUNION 0 a":        "numkeys should be greater than 0",
		"LMPOP -1 a LEFT":   "numkeys should be greater than 0",
		"ZUNIONSTORE d 5 a": "Number of keys can't be greater than number of args",
		"XREAD COUNT 1 a b": "syntax error",
		"GET":               "wrong number of arguments for 'get' command",
		"CONFIG GET":        "wrong number of arguments for 'config|get' command",
	}
	for line, want := range cases {
		args := parseArgs(line)
		_, err := table.Lookup(args).Keys(args, nil)
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", line, err, want)
		}
	}
	// On error, dst comes back as given.
	args := parseArgs("ZUNIONSTORE d 5 a")
	dst, err := table.Lookup(args).Keys(args, []int{42})
	if err == nil || !slices.Equal(dst, []int{42}) {
		t.Errorf("dst after error = %v, %v", dst, err)
	}
}

// TestKeysRandomMatchGetKeys compares Keys with COMMAND GETKEYS on random
// requests for every command with keys.
func TestKeysRandomMatchGetKeys(t *testing.T) {
	tokens := []string{"a", "b", "{t}c", "0", "1", "2", "3", "-1", "x", ">", "$", "*", "",
		"STREAMS", "streams", "STORE", "STOREDIST", "KEYS", "BY", "GET", "LIMIT", "AUTH", "AUTH2",
		"COPY", "COUNT", "BLOCK", "GROUP", "NOACK", "LEFT", "MIN", "WEIGHTS"}
	rng := rand.New(rand.NewPCG(1, 2))
	type sample struct {
		s    *Spec
		args [][]byte
	}
	var samples []sample
	for _, n := range table.Names() {
		s := lookupName(table, n)
		if !s.mandatory && s.Flags&NoMandatoryKeys == 0 {
			continue // no key, or sharded channels only
		}
		prefix := strings.Split(n, "|")
		for i := 0; i < 30; i++ {
			argc := s.Arity
			if argc < 0 {
				argc = -argc + rng.IntN(6)
			}
			if rng.IntN(10) == 0 {
				argc = len(prefix) + rng.IntN(3) // wrong arities too
			}
			args := bargs(prefix...)
			for len(args) < argc {
				args = append(args, []byte(tokens[rng.IntN(len(tokens))]))
			}
			samples = append(samples, sample{s, args})
		}
	}
	ctx := context.Background()
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(samples))
	for i, sm := range samples {
		cmds[i] = pipe.Do(ctx, ifaces(sm.args)...)
	}
	_, _ = pipe.Exec(ctx)
	compared := 0
	for i, sm := range samples {
		line := string(sm.s.Name) + ": " + strings.Join(keyNames(sm.args, seq(len(sm.args))), " ")
		ref, refErr := cmds[i].StringSlice()
		keys, err := sm.s.Keys(sm.args, nil)
		switch {
		case sm.s.Name == "pfmerge" && len(sm.args) == 2:
			// GETKEYS fails on "PFMERGE d" (see TestKeysMatchGetKeys).
			if err != nil || !slices.Equal(keys, []int{1}) {
				t.Errorf("%s: Keys = %v, %v", line, keys, err)
			}
		case refErr != nil:
			if err == nil {
				t.Errorf("%s: GETKEYS fails (%v) but Keys = %v", line, refErr, keys)
			}
		case err != nil:
			// GETKEYS reads bad key counts with atoi and finds no key
			// for commands that may have none (EVAL): the command fails.
			if len(ref) != 0 || sm.s.Flags&NoMandatoryKeys == 0 {
				t.Errorf("%s: Keys fails (%v), GETKEYS = %q", line, err, ref)
			}
		default:
			compared++
			if got := keyNames(sm.args, keys); !slices.Equal(got, ref) {
				t.Errorf("%s: Keys = %q, GETKEYS = %q", line, got, ref)
			}
		}
	}
	t.Logf("%d random requests, %d with keys compared", len(samples), compared)
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
