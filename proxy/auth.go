package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// Client authentication: the users a session may authenticate as (the
// default user from Config.Password, plus Config.Users), the permission
// check made for every command, and the rate limit on failed attempts.

// Defaults of the failed-authentication rate limit.
const (
	DefaultAuthMaxFailures   = 10
	DefaultAuthFailureWindow = time.Minute
	DefaultAuthBlockTime     = time.Minute
	// maxAuthTracked bounds the client addresses the limiter remembers.
	maxAuthTracked = 100_000
)

// authState is a session's authentication: the user set it was resolved in
// and its user (nil: not authenticated). Owned by the reader goroutine.
type authState struct {
	set  *userSet
	user *aclUser
}

// SetUsers replaces the users clients authenticate as: the default user
// (from Config.Password and Config.RestrictDefaultUser, unless u defines a
// user named "default") and the users of u (nil: none). Command and
// category names are checked against the command table; on error nothing
// changes. It is safe to call while serving (the users are swapped
// atomically): sessions keep their authentication but get the new
// permissions of their user with their next command; a session whose user
// was removed or turned off must authenticate again.
func (s *Server) SetUsers(u *Users) error {
	set := &userSet{byName: map[string]*aclUser{}}
	hasDefault := false
	if u != nil {
		for _, spec := range u.Specs {
			cu, err := compileUser(spec, s.table)
			if err != nil {
				return fmt.Errorf("proxy: users %s: %w", u.Source, err)
			}
			set.byName[cu.name] = cu
			hasDefault = hasDefault || cu.name == "default"
		}
	}
	if !hasDefault {
		set.byName["default"] = s.defaultUser(u != nil)
	}
	for _, cu := range set.byName {
		cu.unrestricted = cu.allCommands && cu.allKeys && cu.allChannels
	}
	s.users.Store(set)
	return nil
}

// defaultUser builds the default user from the configuration. With a users
// file that does not define it, the default user is off unless Password is
// set: clients must authenticate as one of the file's users.
func (s *Server) defaultUser(withFile bool) *aclUser {
	u := &aclUser{name: "default", enabled: true, allKeys: true, allChannels: true, allowed: map[string]bool{}}
	if s.cfg.Password == "" {
		u.nopass = true
		u.enabled = !withFile
	} else {
		u.hashes = [][sha256.Size]byte{sha256.Sum256([]byte(s.cfg.Password))}
	}
	s.table.Each(func(spec *command.Spec) {
		allow := true
		if s.cfg.RestrictDefaultUser && (spec.Policy != command.Local || actsOnOtherClients(spec.Name)) &&
			(spec.InCategory(command.CategoryDangerous) || spec.InCategory(command.CategoryAdmin)) {
			allow = false
		}
		u.allowed[spec.Name] = allow
	})
	u.finish(s.table)
	return u
}

// initialAuth is the authentication of a new (or RESET) session: the
// default user when it is on and needs no password.
func (s *Server) initialAuth() authState {
	set := s.users.Load()
	st := authState{set: set}
	if d := set.byName["default"]; d != nil && d.enabled && d.nopass {
		st.user = d
	}
	return st
}

// currentUser returns the session's user (nil: not authenticated), after a
// users reload resolving it again by name.
func (s *session) currentUser() *aclUser {
	set := s.srv.users.Load()
	if set == s.access.set {
		return s.access.user
	}
	prev := s.access.user
	s.access.set = set
	s.access.user = nil
	if prev != nil {
		if u := set.byName[prev.name]; u != nil && u.enabled {
			s.access.user = u
		}
	} else if d := set.byName["default"]; d != nil && d.enabled && d.nopass {
		s.access.user = d
	}
	return s.access.user
}

// denied returns the permission error for the command, or "" when the
// session's user may run it. Commands allowed before authentication (AUTH,
// HELLO, QUIT) are not checked.
func (s *session) denied(spec *command.Spec, args [][]byte) string {
	u := s.access.user
	if u == nil || u.unrestricted {
		return ""
	}
	switch spec.Name {
	case "auth", "hello", "quit":
		return ""
	}
	if spec == s.allowedSpec && u == s.allowedUser {
		return "" // the same command as last time, for the same user
	}
	kind, what := u.deny(spec, args, s.keys[:0])
	if kind == allowed {
		if u.allKeys && u.allChannels {
			// Neither keys nor channels are checked for this user: the
			// verdict holds for every later use of spec.
			s.allowedSpec, s.allowedUser = spec, u
		}
		return ""
	}
	s.logRefusal(u, spec, kind, what)
	return noPermError(kind, spec.Name)
}

// authenticate checks AUTH's or HELLO AUTH's [user] password and, when they
// are right, makes the session that user. It returns the error to answer,
// or "".
func (s *session) authenticate(args [][]byte) string {
	ip := clientIP(s.conn)
	now := time.Now()
	if wait, blocked := s.srv.authLimit.blocked(ip, now); blocked {
		s.srv.obs.AuthFailure()
		return "ERR proxy: too many failed authentication attempts from " + ip + ": try again in " +
			strconv.Itoa(int(wait.Seconds())+1) + "s"
	}
	set := s.srv.users.Load()
	name, pass := "default", args[len(args)-1]
	if len(args) == 2 {
		name = string(args[0])
	}
	u := set.byName[name]
	if len(args) == 1 && u != nil && u.nopass {
		return "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	}
	if !u.passwordOK(pass) {
		s.srv.authLimit.fail(ip, now)
		s.srv.obs.AuthFailure()
		s.logAuthFailure([]byte(name), now)
		s.srv.log.Debug("client authentication failed", "client", s.id, "addr", s.conn.RemoteAddr().String(), "user", trunc(args[0], 64))
		return "WRONGPASS invalid username-password pair or user is disabled."
	}
	s.access = authState{set: set, user: u}
	s.userLabel.Store(&u.name)
	return ""
}

// dummyHash is compared against when the user does not exist, so that an
// unknown user takes as long as a wrong password.
var dummyHash = sha256.Sum256([]byte("clusterproxy: no such user"))

// passwordOK reports whether pass opens u (nil: no such user). The hashes
// are compared in constant time.
func (u *aclUser) passwordOK(pass []byte) bool {
	sum := sha256.Sum256(pass)
	if u == nil {
		subtle.ConstantTimeCompare(sum[:], dummyHash[:])
		return false
	}
	ok := 0
	for _, h := range u.hashes {
		ok |= subtle.ConstantTimeCompare(sum[:], h[:])
	}
	if len(u.hashes) == 0 {
		subtle.ConstantTimeCompare(sum[:], dummyHash[:])
	}
	return u.enabled && (u.nopass || ok == 1)
}

func clientIP(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// authLimiter refuses authentication attempts from a client address that
// failed MaxFailures times within Window, for BlockTime. A nil limiter
// refuses nothing.
type authLimiter struct {
	max           int
	window, block time.Duration

	mu    sync.Mutex // guards fails
	fails map[string]*authFails
}

type authFails struct {
	n     int       // failures since first
	first time.Time // start of the window
	until time.Time // refused until then
}

func newAuthLimiter(max int, window, block time.Duration) *authLimiter {
	if max < 0 {
		return nil
	}
	if max == 0 {
		max = DefaultAuthMaxFailures
	}
	if window <= 0 {
		window = DefaultAuthFailureWindow
	}
	if block <= 0 {
		block = DefaultAuthBlockTime
	}
	return &authLimiter{max: max, window: window, block: block, fails: map[string]*authFails{}}
}

// blocked reports whether ip is refused now, and for how long still.
func (l *authLimiter) blocked(ip string, now time.Time) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[ip]
	if f == nil || !now.Before(f.until) {
		return 0, false
	}
	return f.until.Sub(now), true
}

// fail counts a failed attempt from ip.
func (l *authLimiter) fail(ip string, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[ip]
	if f == nil {
		if len(l.fails) >= maxAuthTracked {
			l.sweep(now)
			if len(l.fails) >= maxAuthTracked {
				return // bounded memory: addresses beyond it are not tracked
			}
		}
		f = &authFails{first: now}
		l.fails[ip] = f
	}
	if now.Sub(f.first) > l.window {
		f.n, f.first = 0, now
	}
	f.n++
	if f.n >= l.max {
		f.until = now.Add(l.block)
		f.n, f.first = 0, now
	}
}

// sweep forgets addresses whose window and block are over.
func (l *authLimiter) sweep(now time.Time) {
	for ip, f := range l.fails {
		if now.Sub(f.first) > l.window && !now.Before(f.until) {
			delete(l.fails, ip)
		}
	}
}

// userName names the session's user for CLIENT LIST/INFO ("default" before
// authentication, as in Redis). It may be called from other sessions.
func (s *session) userName() string {
	if n := s.userLabel.Load(); n != nil {
		return *n
	}
	return "default"
}

// aclDryrun answers ACL DRYRUN user command [arg ...]: +OK when the proxy
// user may run the command, else Redis's explanation as a bulk string
// (the command, key or channel refused).
func (s *session) aclDryrun(c *call, args [][]byte) *call {
	u := s.srv.users.Load().byName[string(args[2])]
	if u == nil {
		return c.fail("ERR User '" + trunc(args[2], 128) + "' not found")
	}
	cmd := args[3:]
	spec := s.srv.table.Lookup(cmd)
	switch {
	case spec != nil && spec.IsContainer() && len(cmd) == 1:
		return c.fail("ERR wrong number of arguments for '" + spec.Name + "' command")
	case spec == nil || spec.IsContainer():
		return c.fail("ERR Command '" + trunc(cmd[0], 128) + "' not found")
	case !arityOK(spec.Arity, len(cmd)):
		return c.fail("ERR wrong number of arguments for '" + spec.Name + "' command")
	}
	if msg := u.explain(spec, cmd); msg != "" {
		c.reply = resp.AppendBulkString(c.reply, msg)
		return c
	}
	c.reply = resp.AppendOK(c.reply)
	return c
}
