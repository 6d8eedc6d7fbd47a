package proxy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/clusterproxy/clusterproxy/internal/command"
)

// Client users: a subset of Redis ACL rules, written as in a Redis ACL file,
// one user per line:
//
//	user alice on #<sha256-hex> ~app:* ~{tenant}* +@read +@write -@dangerous +cl.throttle
//	user ops on >plaintext allkeys allcommands
//	user default off
//
// Rules, applied left to right:
//
//	on, off               the user may (not) authenticate
//	#<sha256-hex>         a password, as the SHA-256 of it (64 hex digits)
//	>password             a password in clear text (a warning is given)
//	nopass                any password is accepted
//	resetpass             forget the passwords and nopass
//	~pattern              keys matching the glob may be used (Redis globs)
//	allkeys               the same as ~*
//	resetkeys             forget the key patterns
//	&pattern, allchannels Pub/Sub channels matching the glob may be used
//	resetchannels         forget the channel patterns
//	+cmd, -cmd            allow or deny a command (or +cmd|sub, -cmd|sub)
//	+@cat, -@cat          allow or deny every command of an ACL category
//	allcommands, nocommands   +@all, -@all
//	reset                 resetpass resetkeys resetchannels off -@all
//
// A new user starts as "off", with no password, no keys, no channels and no
// commands, as in Redis. Categories are the cluster's own (from COMMAND),
// plus @gateway for the proxy's gateway commands (which are in no other
// category) and @dangerous for SCRIPT FLUSH and FUNCTION FLUSH/DELETE/RESTORE.
// Key patterns are checked against every key a command names; commands
// without keys are not affected by them.

// UserSpec is one user line of a users file, parsed but not yet resolved
// against a command table.
type UserSpec struct {
	// Name is the user name.
	Name string
	// Rules are the rules in order, as written.
	Rules []string
	// Line is the line number in the file (for errors), 0 if not from one.
	Line int
}

// Users is a parsed users file (see ParseUsers). Server.SetUsers resolves it
// against the command table.
type Users struct {
	// Specs are the users, in file order; a name appears once.
	Specs []UserSpec
	// Warnings are things an operator should know (clear-text passwords).
	Warnings []string
	// Source names the file, for errors.
	Source string
}

// LoadUsers reads and parses a users file (see ParseUsers).
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("proxy: users file: %w", err)
	}
	defer f.Close()
	u, err := ParseUsers(f, path)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// ParseUsers parses users in the Redis ACL file syntax: "user <name>
// <rule>..." lines; blank lines and lines starting with '#' are ignored.
// The rules' syntax is checked here; command and category names are
// checked when the users are given to a Server. source names the input in
// errors.
func ParseUsers(r io.Reader, source string) (*Users, error) {
	out := &Users{Source: source}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if f[0] != "user" || len(f) < 2 {
			return nil, fmt.Errorf("proxy: users file %s:%d: want \"user <name> <rules>...\"", source, n)
		}
		name := f[1]
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("proxy: users file %s:%d: user %q already defined on line %d", source, n, name, prev)
		}
		seen[name] = n
		for _, rule := range f[2:] {
			if err := checkRule(rule); err != nil {
				return nil, fmt.Errorf("proxy: users file %s:%d: user %q: %w", source, n, name, err)
			}
			if rule[0] == '>' {
				out.Warnings = append(out.Warnings, fmt.Sprintf("users file %s:%d: user %q has a clear-text password (>...); prefer #<sha256-hex>", source, n, name))
			}
		}
		out.Specs = append(out.Specs, UserSpec{Name: name, Rules: f[2:], Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("proxy: users file %s: %w", source, err)
	}
	return out, nil
}

// checkRule checks the syntax of one rule.
func checkRule(r string) error {
	switch strings.ToLower(r) {
	case "on", "off", "nopass", "resetpass", "allkeys", "resetkeys", "allchannels", "resetchannels",
		"allcommands", "nocommands", "reset":
		return nil
	}
	switch r[0] {
	case '>':
		return nil
	case '#':
		if len(r) != 65 {
			return fmt.Errorf("rule %q: a password hash is 64 hex digits (SHA-256)", trimRule(r))
		}
		if _, err := hex.DecodeString(r[1:]); err != nil {
			return fmt.Errorf("rule %q: a password hash is 64 hex digits (SHA-256)", trimRule(r))
		}
		return nil
	case '~', '&':
		return nil
	case '+', '-':
		if len(r) < 2 || r == "+@" || r == "-@" {
			return fmt.Errorf("rule %q: missing command or category name", r)
		}
		return nil
	case '%':
		return fmt.Errorf("rule %q: read/write key permissions (%%R~, %%W~) are not supported by the proxy; use ~pattern", r)
	case '<', '!':
		return fmt.Errorf("rule %q: removing passwords is not supported in a users file; list the passwords a user has", trimRule(r))
	case '(':
		return fmt.Errorf("rule %q: selectors are not supported by the proxy", r)
	}
	return fmt.Errorf("rule %q: unknown rule", trimRule(r))
}

// trimRule shortens a rule for an error message, never showing a password.
func trimRule(r string) string {
	if r != "" && (r[0] == '>' || r[0] == '<') {
		return r[:1] + "..."
	}
	if len(r) > 20 {
		return r[:20] + "..."
	}
	return r
}

// aclUser is a user resolved against the command table. It is immutable.
type aclUser struct {
	name    string
	enabled bool
	nopass  bool
	hashes  [][sha256.Size]byte

	allKeys     bool
	keys        []string // glob patterns
	allChannels bool
	channels    []string
	allCommands bool            // every command of the table is allowed
	allowed     map[string]bool // by spec name, when !allCommands
	// unrestricted: every command, key and channel (no check needed).
	unrestricted bool
}

// userSet is the users a Server authenticates against; replaced whole.
type userSet struct {
	byName map[string]*aclUser
}

// compileUser applies spec's rules to a new user.
func compileUser(spec UserSpec, t *command.Table) (*aclUser, error) {
	u := &aclUser{name: spec.Name, allowed: map[string]bool{}}
	// Every command starts denied; rules toggle commands in order.
	for _, r := range spec.Rules {
		if err := u.apply(r, t); err != nil {
			where := ""
			if spec.Line > 0 {
				where = fmt.Sprintf(" (line %d)", spec.Line)
			}
			return nil, fmt.Errorf("user %q%s: %w", spec.Name, where, err)
		}
	}
	u.finish(t)
	return u, nil
}

// finish computes allCommands: true when every command of the table is
// allowed, so that the check can skip the map.
func (u *aclUser) finish(t *command.Table) {
	all := true
	t.Each(func(s *command.Spec) {
		if !s.IsContainer() && !u.allowed[s.Name] {
			all = false
		}
	})
	u.allCommands = all
}

func (u *aclUser) apply(r string, t *command.Table) error {
	switch strings.ToLower(r) {
	case "on":
		u.enabled = true
		return nil
	case "off":
		u.enabled = false
		return nil
	case "nopass":
		u.nopass, u.hashes = true, nil
		return nil
	case "resetpass":
		u.nopass, u.hashes = false, nil
		return nil
	case "allkeys":
		u.allKeys, u.keys = true, nil
		return nil
	case "resetkeys":
		u.allKeys, u.keys = false, nil
		return nil
	case "allchannels":
		u.allChannels, u.channels = true, nil
		return nil
	case "resetchannels":
		u.allChannels, u.channels = false, nil
		return nil
	case "allcommands":
		return u.setCategory("all", true, t)
	case "nocommands":
		return u.setCategory("all", false, t)
	case "reset":
		u.enabled, u.nopass, u.hashes = false, false, nil
		u.allKeys, u.keys, u.allChannels, u.channels = false, nil, false, nil
		return u.setCategory("all", false, t)
	}
	switch r[0] {
	case '>':
		u.addHash(sha256.Sum256([]byte(r[1:])))
	case '#':
		var h [sha256.Size]byte
		if _, err := hex.Decode(h[:], []byte(r[1:])); err != nil {
			return fmt.Errorf("rule %q: bad hash", trimRule(r))
		}
		u.addHash(h)
	case '~':
		if r == "~*" {
			u.allKeys, u.keys = true, nil
		} else if !u.allKeys {
			u.keys = append(u.keys, r[1:])
		}
	case '&':
		if r == "&*" {
			u.allChannels, u.channels = true, nil
		} else if !u.allChannels {
			u.channels = append(u.channels, r[1:])
		}
	case '+', '-':
		allow := r[0] == '+'
		name := strings.ToLower(r[1:])
		if cat, ok := strings.CutPrefix(name, "@"); ok {
			return u.setCategory(cat, allow, t)
		}
		s := t.Find(name)
		if s == nil {
			return fmt.Errorf("rule %q: unknown command", r)
		}
		if s.IsContainer() {
			// +config allows every subcommand, as in Redis.
			t.Each(func(sub *command.Spec) {
				if strings.HasPrefix(sub.Name, name+"|") {
					u.allowed[sub.Name] = allow
				}
			})
		}
		u.allowed[s.Name] = allow
	default:
		return fmt.Errorf("rule %q: unknown rule", trimRule(r))
	}
	return nil
}

func (u *aclUser) addHash(h [sha256.Size]byte) {
	u.nopass = false
	for _, have := range u.hashes {
		if have == h {
			return
		}
	}
	u.hashes = append(u.hashes, h)
}

func (u *aclUser) setCategory(cat string, allow bool, t *command.Table) error {
	found := cat == "all"
	t.Each(func(s *command.Spec) {
		if s.InCategory(cat) {
			found = true
			u.allowed[s.Name] = allow
		}
	})
	if !found {
		return fmt.Errorf("rule \"%s@%s\": unknown category", map[bool]string{true: "+", false: "-"}[allow], cat)
	}
	return nil
}

// mayRun reports whether the user may run the command of spec.
func (u *aclUser) mayRun(spec *command.Spec) bool {
	return u.allCommands || u.allowed[spec.Name]
}

// mayUseKey reports whether the user may use key.
func (u *aclUser) mayUseKey(key []byte) bool {
	if u.allKeys {
		return true
	}
	for _, p := range u.keys {
		if globMatch(p, key) {
			return true
		}
	}
	return false
}

// mayUseChannel reports whether the user may use a channel; a pattern
// (PSUBSCRIBE) must be one of the user's patterns literally, as in Redis.
func (u *aclUser) mayUseChannel(ch []byte, literal bool) bool {
	if u.allChannels {
		return true
	}
	for _, p := range u.channels {
		if literal && p == string(ch) || !literal && globMatch(p, ch) {
			return true
		}
	}
	return false
}

// The permission errors, worded as Redis 7.0 words them.
const (
	errNoPermKeys     = "NOPERM this user has no permissions to access one of the keys used as arguments"
	errNoPermChannels = "NOPERM this user has no permissions to access one of the channels used as arguments"
)

func errNoPermCommand(name string) string {
	return "NOPERM this user has no permissions to run the '" + name + "' command"
}

// What deny finds.
const (
	allowed = iota
	deniedCommand
	deniedKey
	deniedChannel
)

// noPermError is the error a command refused by deny answers, "" when
// allowed.
func noPermError(kind int, name string) string {
	switch kind {
	case deniedCommand:
		return errNoPermCommand(name)
	case deniedChannel:
		return errNoPermChannels
	case deniedKey:
		return errNoPermKeys
	}
	return ""
}

// explain is ACL DRYRUN's verdict on running spec with args: "" when
// allowed, else what Redis says (naming the key or channel refused).
func (u *aclUser) explain(spec *command.Spec, args [][]byte) string {
	switch kind, what := u.deny(spec, args, nil); kind {
	case deniedCommand:
		return "This user has no permissions to run the '" + spec.Name + "' command"
	case deniedChannel:
		return "This user has no permissions to access the '" + string(what) + "' channel"
	case deniedKey:
		return "This user has no permissions to access the '" + string(what) + "' key"
	}
	return ""
}

// deny checks running spec with args: the first refusal found (the
// command, then its channels, then its keys) and the channel or key
// refused. keys is scratch space for key indexes.
func (u *aclUser) deny(spec *command.Spec, args [][]byte, keys []int) (int, []byte) {
	if !u.mayRun(spec) {
		return deniedCommand, nil
	}
	if !u.allChannels {
		if ch := u.deniedChannel(spec, args); ch != nil {
			return deniedChannel, ch
		}
	}
	if u.allKeys || spec.KeysAreChannels() {
		return allowed, nil
	}
	idx, err := spec.Keys(args, keys)
	if err != nil {
		return allowed, nil // malformed: the command's own error follows
	}
	for _, i := range idx {
		if !u.mayUseKey(args[i]) {
			return deniedKey, args[i]
		}
	}
	return allowed, nil
}

// deniedChannel returns the first channel of a Pub/Sub command that names
// them which the user may not use, or nil.
func (u *aclUser) deniedChannel(spec *command.Spec, args [][]byte) []byte {
	var chans [][]byte
	literal := false
	switch spec.Name {
	case "publish", "spublish":
		chans = args[1:2]
	case "subscribe", "ssubscribe":
		chans = args[1:]
	case "psubscribe":
		chans, literal = args[1:], true
	default:
		return nil
	}
	for _, ch := range chans {
		if !u.mayUseChannel(ch, literal) {
			return ch
		}
	}
	return nil
}

// globMatch reports whether s matches the Redis glob pattern p: '*' any
// run, '?' one byte, "[abc]", "[^a-z]" classes, '\' escapes. It runs in
// O(len(p)*len(s)) at worst (one backtracking point, the last '*').
func globMatch(p string, s []byte) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				for pi < len(p) && p[pi] == '*' {
					pi++
				}
				if pi == len(p) {
					return true
				}
				starP, starS = pi, si
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if ok, next := matchClass(p, pi, s[si]); ok {
					pi, si = next, si+1
					continue
				}
			case '\\':
				if pi+1 < len(p) {
					if p[pi+1] == s[si] {
						pi, si = pi+2, si+1
						continue
					}
				} else if s[si] == '\\' {
					pi, si = pi+1, si+1
					continue
				}
			default:
				if p[pi] == s[si] {
					pi, si = pi+1, si+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the class starting at p[start] == '['. It
// returns whether c is in it and the index after the class. An unclosed
// class runs to the end of the pattern, as in Redis.
func matchClass(p string, start int, c byte) (bool, int) {
	i := start + 1
	not := i < len(p) && p[i] == '^'
	if not {
		i++
	}
	match := false
	for i < len(p) && p[i] != ']' {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			if p[i] == c {
				match = true
			}
			i++
		case i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			i += 3
		default:
			if p[i] == c {
				match = true
			}
			i++
		}
	}
	if i < len(p) {
		i++ // the ']'
	}
	return match != not, i
}
