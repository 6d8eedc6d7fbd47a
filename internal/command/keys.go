package command

import "errors"

// The errors of Keys, worded like Redis's for the same mistakes (the proxy
// prefixes them with "ERR ").
var (
	errNotInteger   = errors.New("value is not an integer or out of range")
	errNegativeKeys = errors.New("Number of keys can't be negative")
	errNoKeys       = errors.New("numkeys should be greater than 0")
	errTooManyKeys  = errors.New("Number of keys can't be greater than number of args")
	errSyntax       = errors.New("syntax error")
)

// Keys appends to dst the indexes (into args, args[0] being the command
// name) of the key arguments, and returns it. It does not allocate when dst
// has the capacity.
//
// The keys are those COMMAND GETKEYS returns: Keys follows the key specs as
// Redis's getKeysUsingKeySpecs does (keyword searches, negative last keys,
// limits, key counts), and where that gives up and Redis falls back to the
// command's own key finder, Keys does what the finder would:
//   - a key spec that cannot be followed (type unknown) contributes no key;
//     SORT has its own finder for its STORE key, like Redis;
//   - a keyword spec whose keyword is missing, or whose keys would run past
//     the arguments (an unbalanced XREAD, GEORADIUS ending with STORE),
//     contributes no key: the command fails on the node anyway;
//   - an incomplete spec contributes the keys it finds; MIGRATE has its own
//     finder for its KEYS option, like Redis.
//
// One deliberate difference: positions from key specs flagged not_key (the
// channels of SSUBSCRIBE, SUNSUBSCRIBE and SPUBLISH) are included, since
// Redis Cluster hashes sharded channels like keys; COMMAND GETKEYS says
// these commands have no keys.
//
// Keys returns an error, worded like Redis's, for a wrong number of
// arguments, for a key count that is not an integer, negative, zero (when
// the command needs keys) or larger than the arguments, and for a command
// that needs keys but has none (such as XREAD without STREAMS).
func (s *Spec) Keys(args [][]byte, dst []int) ([]int, error) {
	if !s.ArityOK(len(args)) {
		return dst, s.arityErr
	}
	if s.keys != nil {
		return s.keys(s, args, dst)
	}
	return s.specKeys(args, dst)
}

// specKeys follows the key specs.
func (s *Spec) specKeys(args [][]byte, dst []int) ([]int, error) {
	n0 := len(dst)
	argc := len(args)
	for i := range s.KeySpecs {
		ks := &s.KeySpecs[i]
		var first int
		switch ks.Begin {
		case BeginIndex:
			first = ks.Index
		case BeginKeyword:
			first = searchKeyword(args, ks.Keyword, ks.StartFrom)
			if first == 0 {
				continue // keyword not found: no key from this spec
			}
		default:
			continue // cannot be followed
		}
		if first < 1 {
			continue
		}
		var last int
		switch ks.Find {
		case FindRange:
			switch {
			case ks.LastKey >= 0:
				last = first + ks.LastKey
			case ks.Limit == 0:
				last = argc + ks.LastKey
			default:
				last = first + ((argc-first)/ks.Limit + ks.LastKey)
			}
		case FindKeyNum:
			idx := first + ks.KeyNumIdx
			if idx < 1 || idx >= argc {
				return dst[:n0], errSyntax
			}
			n, ok := parseInt(args[idx])
			switch {
			case !ok:
				return dst[:n0], errNotInteger
			case n < 0 && !s.mandatory:
				return dst[:n0], errNegativeKeys
			case n <= 0 && s.mandatory:
				return dst[:n0], errNoKeys
			case n == 0:
				continue
			case n > int64(argc):
				return dst[:n0], errTooManyKeys
			}
			first += ks.FirstKey
			last = first + int(n) - 1
			if first < 1 || last >= argc {
				return dst[:n0], errTooManyKeys
			}
		default:
			continue // cannot be followed
		}
		if last >= argc || last < first || first >= argc {
			continue // out of the arguments: a syntax error on the node
		}
		for j := first; j <= last; j += ks.KeyStep {
			dst = append(dst, j)
		}
	}
	if len(dst) == n0 && s.mandatory {
		return dst, errSyntax
	}
	return dst, nil
}

// searchKeyword returns the index after the keyword, searched as Redis does
// (forwards from startFrom up to the last argument excluded; or, with a
// negative startFrom, backwards from that many arguments before the end
// down to argument 2), or 0 if it is not found.
func searchKeyword(args [][]byte, keyword string, startFrom int) int {
	argc := len(args)
	start, end := startFrom, argc-1
	if startFrom <= 0 {
		start, end = argc+startFrom, 1
	}
	for i := start; i != end; {
		if i >= argc || i < 1 {
			break
		}
		if equalFoldC(args[i], keyword) {
			return i + 1
		}
		if start <= end {
			i++
		} else {
			i--
		}
	}
	return 0
}

// equalFoldC reports whether arg equals the ASCII word w, ignoring case,
// the way Redis's strcasecmp does: arg ends at its first NUL byte.
func equalFoldC(arg []byte, w string) bool {
	for i, c := range arg {
		if c == 0 {
			arg = arg[:i]
			break
		}
	}
	if len(arg) != len(w) {
		return false
	}
	for i := 0; i < len(w); i++ {
		a, b := arg[i], w[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// parseInt parses a 64-bit integer as strictly as Redis's string2ll: no
// sign but '-', no leading zero, no space, no overflow.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) >= 21 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (1<<64-1)/10 {
			return 0, false
		}
		v *= 10
		if v > 1<<64-1-uint64(c-'0') {
			return 0, false
		}
		v += uint64(c - '0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// sortKeys finds SORT's keys as Redis's sortGetKeys does: the sorted key,
// and the destination of the last STORE option. BY and GET patterns are not
// keys (in cluster mode the node refuses patterns that may reach other
// slots).
func sortKeys(s *Spec, args [][]byte, dst []int) ([]int, error) {
	dst = append(dst, 1)
	store := 0
	for i := 2; i < len(args); i++ {
		switch a := args[i]; {
		case equalFoldC(a, "limit"):
			i += 2
		case equalFoldC(a, "get"), equalFoldC(a, "by"):
			i++
		case equalFoldC(a, "store") && i+1 < len(args):
			store = i + 1 // the last STORE wins, as in SORT itself
		}
	}
	if store != 0 {
		dst = append(dst, store)
	}
	return dst, nil
}

// migrateKeys finds MIGRATE's keys as Redis does: the key argument, or
// with the KEYS option (found by the incomplete key spec) the keys after
// it, found as migrateGetKeys does.
func migrateKeys(s *Spec, args [][]byte, dst []int) ([]int, error) {
	if searchKeyword(args, "keys", -2) == 0 {
		return s.specKeys(args, dst)
	}
	first, num := 3, 1
	for i := 6; i < len(args); i++ {
		a := args[i]
		if equalFoldC(a, "keys") {
			if len(args[3]) > 0 {
				// Redis: "Cannot use MIGRATE KEYS option when key
				// argument is not empty".
				return dst, errSyntax
			}
			first, num = i+1, len(args)-(i+1)
			break
		}
		switch {
		case equalFoldC(a, "auth"):
			i++
		case equalFoldC(a, "auth2"):
			i += 2
		}
	}
	if num == 0 {
		return dst, errSyntax
	}
	for j := first; j < first+num; j++ {
		dst = append(dst, j)
	}
	return dst, nil
}

// xreadBlocks reports whether an XREAD or XREADGROUP request has the BLOCK
// option, parsing the options before STREAMS as the command does.
func xreadBlocks(args [][]byte) bool {
	for i := 1; i < len(args); i++ {
		more := len(args) - i - 1
		a := args[i]
		switch {
		case equalFoldC(a, "block") && more > 0:
			return true
		case equalFoldC(a, "count") && more > 0:
			i++
		case equalFoldC(a, "streams") && more > 0:
			return false
		case equalFoldC(a, "group") && more >= 2:
			i += 2
		case equalFoldC(a, "noack"):
		default:
			return false // a syntax error on the node
		}
	}
	return false
}
