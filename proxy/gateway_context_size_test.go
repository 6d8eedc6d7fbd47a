package proxy

import (
	"math"
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/contextstore"
)

// TestCtxMessageOverhead: ctxMessageOverhead bounds what appendCtxMessage
// adds beyond a message's strings, in both protocols and with the widest
// integers, so CTX.WINDOW sizes its reply once.
func TestCtxMessageOverhead(t *testing.T) {
	big := strings.Repeat("x", 100_000) // a 6-digit bulk length
	for _, m := range []contextstore.Message{
		{Seq: math.MinInt64, ID: big, Role: "assistant", Content: big, Tokens: math.MinInt64, Meta: big},
		{Seq: math.MaxInt64, Role: "user", Content: "", Tokens: math.MaxInt64},
		{},
	} {
		strs := len(m.ID) + len(m.Role) + len(m.Content) + len(m.Meta)
		for _, proto := range []int{2, 3} {
			if n := len(appendCtxMessage(nil, &m, proto)); n > strs+ctxMessageOverhead {
				t.Errorf("RESP%d: %d bytes for %d bytes of strings, over the overhead of %d", proto, n, strs, ctxMessageOverhead)
			}
		}
	}
}
