package proxy

import (
	"bytes"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// local answers the commands the proxy handles itself. Replies are encoded
// in the session's current protocol version.
func (s *session) local(c *call, spec *command.Spec, args [][]byte) *call {
	p := s.proto
	switch spec.Name {
	case "ping":
		if len(args) > 2 {
			return c.fail("ERR wrong number of arguments for 'ping' command")
		}
		if p == resp.RESP2 && s.subs != nil && s.subs.count() > 0 {
			// Subscribed RESP2 clients get PING's reply in the message shape.
			c.reply = resp.AppendArrayHeader(c.reply, 2)
			c.reply = resp.AppendBulkString(c.reply, "pong")
			if len(args) == 2 {
				c.reply = resp.AppendBulk(c.reply, args[1])
			} else {
				c.reply = resp.AppendBulkString(c.reply, "")
			}
			return c
		}
		if len(args) == 2 {
			c.reply = resp.AppendBulk(c.reply, args[1])
		} else {
			c.reply = resp.AppendSimple(c.reply, "PONG")
		}
	case "echo":
		c.reply = resp.AppendBulk(c.reply, args[1])
	case "quit":
		c.reply = resp.AppendOK(c.reply)
		c.quit = true
	case "monitor":
		return s.monitor(c)
	case "select":
		n, err := strconv.ParseInt(string(args[1]), 10, 64)
		switch {
		case err != nil:
			return c.fail("ERR value is not an integer or out of range")
		case n != 0:
			return c.fail("ERR SELECT is not allowed in cluster mode")
		}
		c.reply = resp.AppendOK(c.reply)
	case "readonly", "readwrite":
		// Cluster clients send these before reading from replicas. Where
		// the proxy reads is its own setting (router.Options.ReadFrom); the
		// reply keeps such clients working.
		c.reply = resp.AppendOK(c.reply)
	case "auth":
		return s.auth(c, args[1:])
	case "hello":
		return s.hello(c, args[1:])
	case "reset":
		s.setForeign(false)
		s.untrack()
		s.trk = nil
		if s.subs != nil {
			s.subs.close()
			s.subs = nil
			for i := range s.subCounts {
				s.subCounts[i].Store(0)
			}
		}
		s.endTx(false)
		s.setProto(resp.RESP2)
		s.access = s.srv.initialAuth()
		s.userLabel.Store(nil)
		s.name.Store(nil)
		s.replyOff, s.skipNext, c.mute = false, false, false
		s.stopMonitor()
		c.reply = resp.AppendSimple(c.reply, "RESET")
	case "info":
		return s.info(c, args[1:])
	case "acl|whoami":
		c.reply = resp.AppendBulkString(c.reply, s.currentUser().name)
	case "acl|users":
		names := slices.Sorted(maps.Keys(s.srv.users.Load().byName))
		c.reply = resp.AppendArrayHeader(c.reply, len(names))
		for _, n := range names {
			c.reply = resp.AppendBulkString(c.reply, n)
		}
	case "acl|list":
		return s.aclList(c)
	case "acl|getuser":
		return s.aclGetUser(c, args)
	case "acl|dryrun":
		return s.aclDryrun(c, args)
	case "acl|log":
		return s.aclLogCmd(c, args)
	case "slowlog|get", "slowlog|len", "slowlog|reset":
		return s.slowlogCmd(c, spec.Name, args)
	case "hotkeys|help", "hotkeys|start", "hotkeys|stop", "hotkeys|get", "hotkeys|reset":
		return s.hotkeys(c, spec.Name, args)
	case "role":
		c.reply = resp.AppendArrayHeader(c.reply, 3)
		c.reply = resp.AppendBulkString(c.reply, "master")
		c.reply = resp.AppendInt(c.reply, 0)
		c.reply = resp.AppendArrayHeader(c.reply, 0)
	case "cluster|info":
		c.reply = resp.AppendVerbatim(c.reply, s.clusterInfo(), p)
	case "cluster|myid":
		c.reply = resp.AppendBulkString(c.reply, s.srv.nodeID)
	case "cluster|myshardid":
		c.reply = resp.AppendBulkString(c.reply, s.srv.nodeID)
	case "cluster|keyslot":
		c.reply = resp.AppendInt(c.reply, int64(router.Slot(args[2])))
	case "cluster|slots":
		c.reply = s.clusterSlots(c.reply)
	case "cluster|shards":
		c.reply = s.clusterShards(c.reply)
	case "cluster|nodes":
		host, port := s.announce()
		line := s.srv.nodeID + " " + net.JoinHostPort(host, strconv.Itoa(port)) + "@0 myself,master - 0 0 1 connected 0-16383\n"
		c.reply = resp.AppendVerbatim(c.reply, line, p)
	case "cluster|countkeysinslot", "cluster|getkeysinslot":
		slot, err := strconv.Atoi(string(args[2]))
		if err != nil || slot < 0 || slot >= router.SlotCount {
			return c.fail("ERR Invalid or out of range slot")
		}
		// Answered by the master that owns the slot.
		return s.send(c, resp.AppendCommand(nil, args...), slot, true)
	default:
		return c.fail("ERR command '" + spec.Name + "' is not supported by the proxy")
	}
	return c
}

func (s *session) auth(c *call, args [][]byte) *call {
	if len(args) > 2 {
		return c.fail("ERR syntax error")
	}
	if msg := s.authenticate(args); msg != "" {
		return c.fail(msg)
	}
	c.reply = resp.AppendOK(c.reply)
	return c
}

// hello implements HELLO [protover [AUTH user pass] [SETNAME name]].
func (s *session) hello(c *call, args [][]byte) *call {
	proto := s.proto
	if len(args) > 0 {
		v, err := strconv.Atoi(string(args[0]))
		if err != nil {
			return c.fail("ERR Protocol version is not an integer or out of range")
		}
		if v != 2 && v != 3 {
			return c.fail("NOPROTO unsupported protocol version")
		}
		proto = v
		args = args[1:]
	}
	var name []byte
	for len(args) > 0 {
		switch {
		case bytes.EqualFold(args[0], []byte("auth")) && len(args) >= 3:
			if msg := s.authenticate(args[1:3]); msg != "" {
				return c.fail(msg)
			}
			args = args[3:]
		case bytes.EqualFold(args[0], []byte("setname")) && len(args) >= 2:
			if !validName(args[1]) {
				return c.fail("ERR Client names cannot contain spaces, newlines or special characters.")
			}
			name = args[1]
			args = args[2:]
		default:
			return c.fail("ERR Syntax error in HELLO option '" + trunc(args[0], 128) + "'")
		}
	}
	if s.currentUser() == nil {
		return c.fail("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	}
	if name != nil {
		n := string(name)
		s.name.Store(&n)
	}
	s.setProto(proto)
	b := resp.AppendMapHeader(c.reply, 7, proto)
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "redis")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, s.srv.cfg.ServerVersion)
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, int64(proto))
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, s.id)
	b = resp.AppendBulkString(b, "mode")
	b = resp.AppendBulkString(b, "standalone")
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	b = resp.AppendArrayHeader(b, 0)
	c.reply = b
	return c
}

// loadString returns the string p points to, or "".
func loadString(p *atomic.Pointer[string]) string {
	if v := p.Load(); v != nil {
		return *v
	}
	return ""
}

func validName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

// client answers the CLIENT family for the proxy's own clients (see also
// clientadmin.go, and tracking.go for client-side caching). NO-TOUCH would
// act on node connections shared by many clients, and is refused with the
// reason.
func (s *session) client(c *call, args [][]byte) *call {
	if len(args) < 2 {
		return c.fail("ERR wrong number of arguments for 'client' command")
	}
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "id":
		c.reply = resp.AppendInt(c.reply, s.id)
	case "getname":
		if n := s.name.Load(); n != nil && *n != "" {
			c.reply = resp.AppendBulkString(c.reply, *n)
		} else {
			c.reply = resp.AppendNull(c.reply, s.proto)
		}
	case "setname":
		if len(args) != 3 {
			return c.fail("ERR wrong number of arguments for 'client|setname' command")
		}
		if !validName(args[2]) {
			return c.fail("ERR Client names cannot contain spaces, newlines or special characters.")
		}
		n := string(args[2])
		s.name.Store(&n)
		c.reply = resp.AppendOK(c.reply)
	case "setinfo":
		if len(args) != 4 {
			return c.fail("ERR wrong number of arguments for 'client|setinfo' command")
		}
		var dst *atomic.Pointer[string]
		switch strings.ToLower(string(args[2])) {
		case "lib-name":
			dst = &s.libName
		case "lib-ver":
			dst = &s.libVer
		default:
			return c.fail("ERR Unrecognized option '" + trunc(args[2], 128) + "'")
		}
		if !validName(args[3]) {
			return c.fail("ERR " + trunc(args[2], 128) + " cannot contain spaces, newlines or special characters.")
		}
		v := string(args[3])
		dst.Store(&v)
		c.reply = resp.AppendOK(c.reply)
	case "info":
		c.reply = resp.AppendVerbatim(c.reply, s.clientLine(), s.proto)
	case "list":
		return s.clientList(c, args)
	case "help":
		lines := []string{
			"CLIENT <subcommand> [<arg> ...]. Subcommands answered by the proxy:",
			"ID", "GETNAME", "SETNAME <name>", "SETINFO <attr> <value>", "INFO", "LIST [TYPE normal|pubsub] | LIST ID id [id ...]",
			"KILL <ip:port> | KILL [ID id] [ADDR ip:port] [LADDR ip:port] [USER name] [TYPE normal|pubsub] [SKIPME yes|no] [MAXAGE secs]",
			"PAUSE <milliseconds> [WRITE|ALL] (this proxy's clients)", "UNPAUSE", "REPLY ON|OFF|SKIP",
			"UNBLOCK <id> [TIMEOUT|ERROR]", "NO-EVICT ON|OFF",
			"TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> ...] [OPTIN] [OPTOUT] [NOLOOP]",
			"CACHING (YES|NO)", "TRACKINGINFO", "GETREDIR",
		}
		c.reply = resp.AppendArrayHeader(c.reply, len(lines))
		for _, l := range lines {
			c.reply = resp.AppendSimple(c.reply, l)
		}
	case "tracking":
		return s.clientTracking(c, args)
	case "caching":
		return s.clientCaching(c, args)
	case "trackinginfo":
		return s.clientTrackingInfo(c)
	case "getredir":
		return s.clientGetRedir(c)
	case "kill":
		return s.clientKill(c, args)
	case "pause":
		return s.clientPause(c, args)
	case "unpause":
		return s.clientUnpause(c, args)
	case "reply":
		return s.clientReply(c, args)
	case "unblock":
		return s.clientUnblock(c, args)
	case "no-evict":
		// The proxy never evicts clients to free memory (its limits are per
		// client: -max-pipeline, -client-write-timeout), so every client is
		// already what NO-EVICT asks for.
		if len(args) != 3 {
			return c.fail("ERR wrong number of arguments for 'client|no-evict' command")
		}
		switch strings.ToLower(string(args[2])) {
		case "on", "off":
			c.reply = resp.AppendOK(c.reply)
		default:
			return c.fail("ERR syntax error")
		}
	case "no-touch":
		s.srv.obs.Unsupported("client|" + sub)
		return c.fail("ERR command 'client|" + sub + "' is not supported by the proxy: it acts on node connections shared by many clients")
	default:
		return c.fail("ERR unknown subcommand '" + trunc(args[1], 128) + "'. Try CLIENT HELP.")
	}
	return c
}

// clientLine is the session's line of CLIENT LIST and CLIENT INFO, with
// Redis's fields that mean something for a proxy client. Other sessions
// read it, so it uses only their atomics and fields fixed at creation.
func (s *session) clientLine() string {
	name := ""
	if n := s.name.Load(); n != nil {
		name = *n
	}
	now := time.Now()
	last := s.created
	if at := s.lastCmdAt.Load(); at != 0 {
		last = time.Unix(0, at)
	}
	cmd := "NULL"
	if c := s.lastCmd.Load(); c != nil {
		cmd = *c
	}
	return "id=" + strconv.FormatInt(s.id, 10) +
		" addr=" + s.addr +
		" laddr=" + s.conn.LocalAddr().String() +
		" name=" + name +
		" age=" + strconv.Itoa(int(now.Sub(s.created).Seconds())) +
		" idle=" + strconv.Itoa(int(max(now.Sub(last), 0).Seconds())) +
		" flags=" + s.flagLetters() +
		" db=0 sub=" + strconv.Itoa(int(s.subCounts[0].Load())) +
		" psub=" + strconv.Itoa(int(s.subCounts[1].Load())) +
		" ssub=" + strconv.Itoa(int(s.subCounts[2].Load())) +
		" cmd=" + cmd +
		" user=" + s.userName() + " redir=" + strconv.FormatInt(s.redirShown(), 10) + " resp=" + strconv.Itoa(int(s.protoShown.Load())) +
		" lib-name=" + loadString(&s.libName) + " lib-ver=" + loadString(&s.libVer) + "\n"
}

// announce is the address the proxy presents as the cluster's only node.
func (s *session) announce() (string, int) {
	addr := s.srv.cfg.AnnounceAddr
	if addr == "" {
		addr = s.conn.LocalAddr().String()
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	port, _ := strconv.Atoi(portStr)
	return host, port
}

func (s *session) clusterInfo() string {
	state := "ok"
	if s.srv.router.SlotsCovered() < router.SlotCount {
		state = "fail"
	}
	return "cluster_state:" + state + "\r\n" +
		"cluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n" +
		"cluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n" +
		"cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n" +
		"total_cluster_links_buffer_limit_exceeded:0\r\n"
}

// clusterSlots presents the proxy as one node owning every slot.
func (s *session) clusterSlots(b []byte) []byte {
	host, port := s.announce()
	b = resp.AppendArrayHeader(b, 1)
	b = resp.AppendArrayHeader(b, 3)
	b = resp.AppendInt(b, 0)
	b = resp.AppendInt(b, router.SlotCount-1)
	b = resp.AppendArrayHeader(b, 4)
	b = resp.AppendBulkString(b, host)
	b = resp.AppendInt(b, int64(port))
	b = resp.AppendBulkString(b, s.srv.nodeID)
	return resp.AppendMapHeader(b, 0, s.proto)
}

func (s *session) clusterShards(b []byte) []byte {
	host, port := s.announce()
	p := s.proto
	b = resp.AppendArrayHeader(b, 1)
	b = resp.AppendMapHeader(b, 2, p)
	b = resp.AppendBulkString(b, "slots")
	b = resp.AppendArrayHeader(b, 2)
	b = resp.AppendInt(b, 0)
	b = resp.AppendInt(b, router.SlotCount-1)
	b = resp.AppendBulkString(b, "nodes")
	b = resp.AppendArrayHeader(b, 1)
	b = resp.AppendMapHeader(b, 7, p)
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendBulkString(b, s.srv.nodeID)
	b = resp.AppendBulkString(b, "port")
	b = resp.AppendInt(b, int64(port))
	b = resp.AppendBulkString(b, "ip")
	b = resp.AppendBulkString(b, host)
	b = resp.AppendBulkString(b, "endpoint")
	b = resp.AppendBulkString(b, host)
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "replication-offset")
	b = resp.AppendInt(b, 0)
	b = resp.AppendBulkString(b, "health")
	return resp.AppendBulkString(b, "online")
}

// info answers INFO with the proxy's own sections (server, clients, cluster)
// and the keyspace summed over every master. Sections that describe one
// node (memory, stats, replication, ...) have no single answer behind a
// proxy and are left out, as Redis leaves out unknown sections.
func (s *session) info(c *call, sections [][]byte) *call {
	want := map[string]bool{}
	for _, sec := range sections {
		want[strings.ToLower(string(sec))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	show := func(name string) bool { return all || want[name] }
	var b strings.Builder
	if show("server") {
		b.WriteString("# Server\r\nredis_version:" + s.srv.cfg.ServerVersion + "\r\nredis_mode:standalone\r\n" +
			"proxy:clusterproxy\r\nprocess_id:" + strconv.Itoa(os.Getpid()) +
			"\r\nuptime_in_seconds:" + strconv.Itoa(int(time.Since(s.srv.started).Seconds())) + "\r\n")
		if host, port := s.announce(); host != "" {
			b.WriteString("tcp_port:" + strconv.Itoa(port) + "\r\n")
		}
		b.WriteString("\r\n")
	}
	if show("clients") {
		paused, left := s.srv.pause.state()
		st := s.srv.clientStats()
		b.WriteString("# Clients\r\nconnected_clients:" + strconv.Itoa(s.srv.Clients()) +
			"\r\nmaxclients:" + strconv.FormatInt(s.srv.maxClients.Load(), 10) +
			"\r\nblocked_clients:" + strconv.Itoa(st.blocked) +
			"\r\npubsub_clients:" + strconv.Itoa(st.pubsub) +
			"\r\nmonitor_clients:" + strconv.Itoa(int(s.srv.monitors.n.Load())) +
			"\r\ntracking_clients:" + strconv.Itoa(int(s.srv.tracking.n.Load())) +
			"\r\npaused_actions:" + paused +
			"\r\npaused_timeout_milliseconds:" + strconv.FormatInt(left.Milliseconds(), 10) + "\r\n\r\n")
	}
	head := b.String()
	b.Reset()
	if show("stats") {
		total := s.srv.commandsProcessed()
		b.WriteString("# Stats\r\ntotal_connections_received:" + strconv.FormatInt(s.srv.nextID.Load(), 10) +
			"\r\ntotal_commands_processed:" + strconv.FormatInt(total, 10) +
			"\r\ninstantaneous_ops_per_sec:" + strconv.FormatInt(s.srv.opsRate.sample(time.Now(), total), 10) +
			"\r\nrejected_connections:" + strconv.FormatInt(s.srv.rejected.Load(), 10) +
			"\r\ntracking_total_keys:" + strconv.FormatInt(s.srv.tracking.nkeys.Load(), 10) +
			"\r\ntracking_total_items:" + strconv.FormatInt(s.srv.tracking.nitems.Load(), 10) +
			"\r\ntracking_total_prefixes:" + strconv.FormatInt(s.srv.tracking.prefixes.Load(), 10) + "\r\n\r\n")
	}
	if show("cluster") {
		b.WriteString("# Cluster\r\ncluster_enabled:0\r\n\r\n")
	}
	tail := b.String()
	proto := s.proto
	var ask []string // sections summed over the masters
	if show("memory") {
		ask = append(ask, "memory")
	}
	if show("keyspace") {
		ask = append(ask, "keyspace")
	}
	if len(ask) == 0 {
		c.reply = resp.AppendVerbatim(c.reply, strings.TrimSuffix(head+tail, "\r\n"), proto)
		return c
	}
	s.allMasters(c, resp.AppendCommandStrings(nil, append([]string{"INFO"}, ask...)...), command.NoMerge, true)
	c.fan.custom = func(replies [][]byte) []byte {
		var k strings.Builder
		k.WriteString(head)
		if show("memory") {
			used, max := sumMemory(replies)
			k.WriteString("# Memory\r\nused_memory:" + strconv.FormatInt(used, 10) +
				"\r\nused_memory_human:" + humanBytes(used) +
				"\r\nmaxmemory:" + strconv.FormatInt(max, 10) +
				"\r\nmaxmemory_human:" + humanBytes(max) +
				"\r\nproxy_used_memory:" + strconv.FormatUint(proxyHeap(), 10) + "\r\n\r\n")
		}
		k.WriteString(tail)
		if show("keyspace") {
			sums, order := sumKeyspace(replies)
			k.WriteString("# Keyspace\r\n")
			for _, db := range order {
				v := sums[db]
				k.WriteString(db + ":keys=" + strconv.FormatInt(v[0], 10) + ",expires=" + strconv.FormatInt(v[1], 10) + ",avg_ttl=0\r\n")
			}
		}
		out := k.String()
		if strings.HasSuffix(out, "\r\n\r\n") {
			out = out[:len(out)-2] // no blank line after the last section
		}
		return resp.AppendVerbatim(nil, out, proto)
	}
	return c
}
