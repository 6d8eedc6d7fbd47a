package command

import (
	"bytes"
	"testing"
)

// FuzzKeys: for any spec of the table and any arguments, Keys does not
// panic, keeps dst's prefix and returns only indexes of arguments (never
// the command name). Lookup and Blocks do not panic either.
func FuzzKeys(f *testing.F) {
	seeds := []string{
		"get\nk",
		"mset\na\n1\nb\n2",
		"eval\ns\n2\na\nb",
		"eval\ns\n-1",
		"xread\ncount\n1\nstreams\na\nb\n0\n0",
		"xreadgroup\ngroup\ng\nc\nstreams\ns\n>",
		"zunionstore\nd\n2\na\nb\nweights\n1\n2",
		"georadius\nk\n0\n0\n1\nkm\nstore\nd",
		"sort\nk\nlimit\n0\n1\nstore\nd",
		"migrate\nh\n1\n\n0\n10\nauth2\nu\np\nkeys\na\nb",
		"object\nencoding\nk",
		"lmpop\n99999999999999999999\na\nleft",
	}
	for i, s := range seeds {
		f.Add(uint16(i*37), []byte(s))
	}
	specs := allSpecs()
	f.Fuzz(func(t *testing.T, pick uint16, data []byte) {
		args := bytes.Split(data, []byte("\n"))
		table.Lookup(args)
		s := specs[int(pick)%len(specs)]
		checkKeys(t, s, args)
		s.Blocks(args)
	})
}

// FuzzKeySpec: for any key spec, even ones Redis never sends, Keys does not
// panic and returns only indexes of arguments.
func FuzzKeySpec(f *testing.F) {
	f.Add(uint8(1), int8(1), int8(0), uint8(1), int8(0), int8(0), int8(0), int8(0), int8(1), uint8(0), []byte("get\nk"))
	f.Add(uint8(2), int8(0), int8(-2), uint8(1), int8(-1), int8(0), int8(0), int8(0), int8(1), uint8(0), []byte("migrate\nh\n1\n\n0\n10\nKW\na\nb"))
	f.Add(uint8(2), int8(0), int8(1), uint8(1), int8(-1), int8(2), int8(0), int8(0), int8(1), uint8(0), []byte("xread\nKW\na\nb\n0\n0"))
	f.Add(uint8(1), int8(2), int8(0), uint8(2), int8(0), int8(0), int8(0), int8(1), int8(1), uint8(1), []byte("eval\ns\n2\na\nb"))
	f.Add(uint8(1), int8(1), int8(0), uint8(2), int8(0), int8(0), int8(-3), int8(-5), int8(0), uint8(0), []byte("x\n3\na\nb"))
	f.Fuzz(func(t *testing.T, begin uint8, index, startFrom int8, find uint8, lastKey, limit, keyNumIdx, firstKey, step int8, flags uint8, data []byte) {
		s := &Spec{Name: "fuzz", Arity: -1, KeySpecs: []KeySpec{{
			Flags: KeyFlags(flags) & (KeyNotKey | KeyIncomplete),
			Begin: BeginKind(begin % 3), Index: int(index), Keyword: "KW", StartFrom: int(startFrom),
			Find: FindKind(find % 3), LastKey: int(lastKey), Limit: int(limit),
			KeyNumIdx: int(keyNumIdx), FirstKey: int(firstKey), KeyStep: int(step),
		}}}
		if flags&0x80 != 0 {
			s.Flags |= NoMandatoryKeys
		}
		prepare(s)
		checkKeys(t, s, bytes.Split(data, []byte("\n")))
	})
}

func checkKeys(t *testing.T, s *Spec, args [][]byte) {
	t.Helper()
	dst := []int{-7}
	out, err := s.Keys(args, dst)
	if len(out) == 0 || out[0] != -7 {
		t.Fatalf("%s %q: dst prefix lost: %v", s.Name, args, out)
	}
	if err != nil && len(out) != 1 {
		t.Fatalf("%s %q: error %v with keys %v", s.Name, args, err, out)
	}
	for _, i := range out[1:] {
		if i < 1 || i >= len(args) {
			t.Fatalf("%s %q: index %d out of range (keys %v)", s.Name, args, i, out)
		}
	}
}

func allSpecs() []*Spec {
	var specs []*Spec
	for _, n := range table.Names() {
		specs = append(specs, lookupName(table, n))
	}
	return specs
}
