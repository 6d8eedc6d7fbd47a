package command

import (
	"strconv"
	"testing"
)

var benchCases = []struct {
	name string
	args [][]byte
}{
	{"GET", bargs("GET", "key:1")},
	{"get", bargs("get", "key:1")},
	{"MSET10", mset(10)},
	{"EVAL", bargs("EVALSHA", "0123456789012345678901234567890123456789", "2", "a", "b", "arg")},
	{"XREADGROUP", bargs("XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "STREAMS", "s1", "s2", ">", ">")},
	{"ZUNIONSTORE", bargs("ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2")},
	{"SORT", bargs("SORT", "k", "BY", "w_*", "LIMIT", "0", "10", "STORE", "d")},
	{"OBJECT", bargs("OBJECT", "ENCODING", "k")},
}

func mset(pairs int) [][]byte {
	args := bargs("MSET")
	for i := 0; i < pairs; i++ {
		args = append(args, []byte("key:"+strconv.Itoa(i)), []byte("value"))
	}
	return args
}

// TestNoAllocs checks that Lookup and Keys do not allocate.
func TestNoAllocs(t *testing.T) {
	dst := make([]int, 0, 64)
	for _, c := range benchCases {
		var err error
		allocs := testing.AllocsPerRun(100, func() {
			s := table.Lookup(c.args)
			dst, err = s.Keys(c.args, dst[:0])
		})
		if err != nil || len(dst) == 0 {
			t.Errorf("%s: keys %v, %v", c.name, dst, err)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Lookup+Keys", c.name, allocs)
		}
	}
	bad := bargs("ZUNIONSTORE", "d", "9", "a")
	if allocs := testing.AllocsPerRun(100, func() {
		_, _ = table.Lookup(bad).Keys(bad, dst[:0])
	}); allocs != 0 {
		t.Errorf("error path: %v allocs", allocs)
	}
	unknown := bargs("NOSUCHCOMMAND", "x")
	if allocs := testing.AllocsPerRun(100, func() { table.Lookup(unknown) }); allocs != 0 {
		t.Errorf("unknown command: %v allocs", allocs)
	}
}

func BenchmarkLookupKeys(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			dst := make([]int, 0, 64)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s := table.Lookup(c.args)
				dst, _ = s.Keys(c.args, dst[:0])
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	args := bargs("CONFIG", "GET", "maxmemory")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if table.Lookup(args) == nil {
			b.Fatal("nil")
		}
	}
}
