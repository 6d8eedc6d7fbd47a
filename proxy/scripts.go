package proxy

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// maxScripts bounds the script bodies the proxy remembers to heal NOSCRIPT.
const maxScripts = 10000

// scriptCache remembers Lua script bodies seen in EVAL and SCRIPT LOAD, by
// SHA1, so that an EVALSHA answered NOSCRIPT (a master promoted after a
// failover, a restarted node, SCRIPT FLUSH on one node) is healed by loading
// the script on that node and running EVALSHA again.
type scriptCache struct {
	mu     sync.Mutex // guards bodies
	bodies map[string][]byte
}

// remember records body under its SHA1 (lower-case hex) while there is room.
func (sc *scriptCache) remember(body []byte) {
	sum := sha1.Sum(body)
	sha := hex.EncodeToString(sum[:])
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.bodies == nil {
		sc.bodies = map[string][]byte{}
	}
	if _, ok := sc.bodies[sha]; ok || len(sc.bodies) >= maxScripts {
		return
	}
	sc.bodies[sha] = append([]byte(nil), body...)
}

func (sc *scriptCache) body(sha []byte) []byte {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.bodies[strings.ToLower(string(sha))]
}

// healNoScript runs after an EVALSHA/EVALSHA_RO call: on NOSCRIPT with a
// known body it loads the script on the node that answered and sends the
// call again. sha is the EVALSHA argument.
func (s *session) healNoScript(c *call, sha []byte) {
	reply := c.req.Reply
	if c.req.Err != nil || !bytes.HasPrefix(reply, []byte("-NOSCRIPT")) {
		return
	}
	body := s.srv.scripts.body(sha)
	addr := c.req.NodeAddr()
	if body == nil || addr == "" {
		return
	}
	load := router.NewRequest()
	load.Frame = resp.AppendCommand(nil, []byte("SCRIPT"), []byte("LOAD"), body)
	load.Addr = addr
	load.Conn = int(s.id)
	load.Proto = s.proto
	load.Resendable = true
	s.srv.router.Do(load)
	if load.Err != nil || resp.IsError(load.Reply) {
		return // keep the NOSCRIPT reply
	}
	s.srv.router.Send(c.req)
	s.srv.router.Wait(c.req)
}
