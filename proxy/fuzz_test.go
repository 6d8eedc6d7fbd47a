package proxy_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
)

// FuzzSession writes arbitrary bytes to the proxy on a fresh connection,
// then half-closes it and reads what comes back until the proxy closes the
// connection (or a deadline), and checks after each input that the proxy
// still answers PING on another connection. A panic anywhere in the proxy
// kills the test binary, so it fails the input.
//
// One proxy serves every input of a test binary (the fuzz function runs
// once per process; f.Fuzz then runs the inputs). It restricts the default
// user as -allow-dangerous=false does, so that no input can flush, rename or
// reconfigure the shared cluster (FLUSHALL, CONFIG SET, KEYS, SCRIPT
// FLUSH...); the keys of the seeds start with "fuzz-".
//
//	go test -run '^$' -fuzz '^FuzzSession$' -fuzztime 60s ./proxy/
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		// Valid commands, RESP and inline.
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$8\r\nfuzz-k:1\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$8\r\nfuzz-k:1\r\n",
		"PING\r\nSET fuzz-k:2 \"a b\\x41\"\r\nGET fuzz-k:2\r\nECHO 'it''s'\r\nINCR fuzz-n\r\n",
		"MGET fuzz-a fuzz-b fuzz-c\r\nMSET fuzz-a 1 fuzz-b 2\r\nDEL fuzz-a fuzz-b fuzz-c\r\nEXISTS fuzz-a\r\n",
		"HSET fuzz-h f v\r\nHGETALL fuzz-h\r\nEXPIRE fuzz-h 60\r\nTTL fuzz-h\r\nTYPE fuzz-h\r\n",
		"SCAN 0 MATCH fuzz-* COUNT 10\r\nDBSIZE\r\n",
		"EVAL \"return redis.call('GET', KEYS[1])\" 1 fuzz-e\r\nEVALSHA 0000000000000000000000000000000000000000 1 fuzz-e\r\n",
		"CLIENT SETNAME fuzz\r\nCLIENT GETNAME\r\nCLIENT INFO\r\nCLIENT ID\r\n",
		"CLUSTER KEYSLOT fuzz-k\r\nCLUSTER INFO\r\nROLE\r\nINFO server\r\nCOMMAND COUNT\r\n",
		"HELLO 3\r\nGET fuzz-k:1\r\nHGETALL fuzz-h\r\nHELLO 2\r\n",
		"SELECT 0\r\nSELECT 1\r\nREADONLY\r\nREADWRITE\r\nRESET\r\n",
		"AUTH nobody wrong\r\nHELLO 3 AUTH default wrong\r\nPING\r\n",
		"QUIT\r\nPING\r\n",
		// Transactions, whole and in fragments.
		"MULTI\r\nSET fuzz-{t}:a 1\r\nINCR fuzz-{t}:a\r\nEXEC\r\n",
		"MULTI\r\nGET fuzz-a\r\nGET fuzz-b\r\nEXEC\r\n",
		"WATCH fuzz-w\r\nMULTI\r\nSET fuzz-w 1\r\n",
		"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nNOSUCH\r\nEXEC\r\n",
		"MULTI\r\nSUBSCRIBE fuzz-ch\r\nBLPOP fuzz-l 0\r\nDISCARD\r\n",
		// Pub/sub.
		"SUBSCRIBE fuzz-ch\r\nPING\r\nGET fuzz-k:1\r\nUNSUBSCRIBE\r\nGET fuzz-k:1\r\n",
		"PSUBSCRIBE fuzz-*\r\nPUBLISH fuzz-ch m\r\nSSUBSCRIBE fuzz-ch\r\nPUNSUBSCRIBE\r\n",
		"HELLO 3\r\nSUBSCRIBE fuzz-ch\r\nGET fuzz-k:1\r\nSPUBLISH fuzz-ch m\r\n",
		// Blocking commands and WAIT.
		"BLPOP fuzz-l 0\r\nPING\r\n",
		"BLPOP fuzz-l 0.01\r\nXREAD BLOCK 10 STREAMS fuzz-s $\r\nPING\r\n",
		"SET fuzz-w 1\r\nWAIT 1 10\r\n",
		// Client-side caching.
		"HELLO 3\r\nCLIENT TRACKING ON\r\nGET fuzz-k:1\r\nSET fuzz-k:1 v\r\nMULTI\r\nGET fuzz-k:1\r\nEXEC\r\nCLIENT TRACKING OFF\r\n",
		"CLIENT TRACKING ON OPTIN\r\nCLIENT CACHING YES\r\nMGET fuzz-a fuzz-b\r\nCLIENT TRACKINGINFO\r\nRESET\r\nGET fuzz-a\r\n",
		"CLIENT TRACKING ON BCAST PREFIX fuzz- PREFIX fuzz-x\r\nCLIENT TRACKING ON REDIRECT 1\r\nSUBSCRIBE __redis__:invalidate\r\n",
		// Gateway commands.
		"CL.THROTTLE fuzz-t 10 1 60\r\nRL.ACQUIRE fuzz-t RPM 10 TOKENS 1\r\n",
		"CACHE.GET fuzz-ns fuzz-key\r\nCTX.WINDOW fuzz-t fuzz-s 100\r\n",
		// Malformed frames, bad lengths, huge counts.
		"*1\r\n$-5\r\n",
		"*1\r\n$1099511627776\r\n",
		"*1\r\n$536870912\r\nabc",
		"*2\r\n$3\r\nGET\r\n$99\r\nfuzz-k\r\n",
		"*2\r\n$3\r\nGET\r\n:1\r\n",
		"*1\r\n$x\r\n",
		"*1048577\r\n",
		"*2147483648\r\n",
		"*9223372036854775807\r\n",
		"*-1\r\n*0\r\n\r\n",
		"*99999\r\n$3\r\nGET\r\n",
		"*3\r\n$3\r\nGET\r\n",
		"SET fuzz-q \"unbalanced\r\n",
		"\r\n\r\n   \r\n\n",
		"\x00\xff*\r\n$\r\n",
	} {
		f.Add([]byte(s))
	}

	p := startProxy(f, shared, proxy.Config{RestrictDefaultUser: true}, router.Options{})
	alive := dialRaw(f, p.Addr)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		go func() {
			// Written while the replies are read, so that backpressure
			// cannot deadlock the two sides.
			if _, err := c.Write(data); err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
			}
		}()
		_, _ = io.Copy(io.Discard, c) // until the proxy closes, or the deadline
		c.Close()

		_ = alive.SetDeadline(time.Now().Add(10 * time.Second))
		if got := alive.do(t, "PING"); got != "+PONG\r\n" {
			t.Fatalf("proxy not answering after the input: %q", got)
		}
	})
}
