package command

// The proxy's policy table: how the proxy handles each command, by name
// ("container|subcommand" for a subcommand). Parse applies it to the specs
// it builds from COMMAND; a command not named here is Forward: routed by
// the slot of its keys (all of them in one slot), or to any master when it
// has none. Names a node does not know are ignored, so the table may name
// commands of later Redis versions.
//
// The test TestOverridesCoverRedis70 checks that every name here exists in
// Redis 7.0 or is listed as a later one, and TestTipsAgree that no command
// Redis tips as all_shards/all_nodes is left Forward.

type override struct {
	policy  Policy
	merge   Merge
	keyStep int
	reason  string
	keys    keysFunc                 // replaces the key specs
	blocks  func(args [][]byte) bool // for Blocking: whether this request blocks
}

// Reasons shown to the clients of Unsupported commands.
const (
	whyShared      = "it acts on node connections shared by many clients"
	whyTopology    = "cluster topology changes must be made on the nodes directly"
	whySingleNode  = "the proxy presents the cluster as a single node"
	whyReplication = "replication is managed on the nodes directly"
	whyPersistence = "persistence is per node: run it on each node"
	whyConfig      = "configuration is per node (replicas included): set it on each node"
	whyACL         = "the proxy's users come from its users file (-users-file, read again on SIGHUP); the nodes' ACLs are managed on each node"
	whyDiagnostics = "diagnostics are per node: query the nodes directly"
	whyModules     = "modules are loaded per node: load them on each node"
	whyDB          = "cluster mode has only database 0"
)

var overrides = map[string]override{
	// --- Answered by the proxy for its own client connection. Forwarding
	// them would act on (or describe) a backend connection shared by many
	// clients.
	"ping":      {policy: Local},
	"echo":      {policy: Local},
	"quit":      {policy: Local},
	"select":    {policy: Local}, // 0 is OK; any other db is refused, as in cluster mode
	"hello":     {policy: Local},
	"auth":      {policy: Local},
	"reset":     {policy: Local},
	"readonly":  {policy: Local}, // cluster clients send it before reading from replicas
	"readwrite": {policy: Local},
	// INFO and ROLE describe one node; the proxy describes itself (a single
	// master holding every slot), like it does for CLUSTER.
	"info": {policy: Local},
	"role": {policy: Local},
	// MONITOR shows the commands of the proxy's clients, as it would show
	// a node's.
	"monitor": {policy: Local},

	// CLIENT: the proxy answers what concerns the client's own connection
	// and refuses what would act on shared backend connections.
	"client|id":           {policy: Local},
	"client|getname":      {policy: Local},
	"client|setname":      {policy: Local},
	"client|setinfo":      {policy: Local}, // Redis 7.2
	"client|info":         {policy: Local},
	"client|list":         {policy: Local}, // the proxy's own clients
	"client|help":         {policy: Local},
	"client|kill":         {policy: Local},
	"client|pause":        {policy: Local},
	"client|unpause":      {policy: Local},
	"client|unblock":      {policy: Local},
	"client|no-evict":     {policy: Local},                          // the proxy never evicts clients
	"client|no-touch":     {policy: Unsupported, reason: whyShared}, // Redis 7.2
	"client|reply":        {policy: Local},
	"client|tracking":     {policy: Local}, // client-side caching: the proxy keeps the table
	"client|trackinginfo": {policy: Local},
	"client|caching":      {policy: Local},
	"client|getredir":     {policy: Local},

	// CLUSTER: the proxy presents the cluster as one node holding every
	// slot; it answers the introspection itself (COUNTKEYSINSLOT and
	// GETKEYSINSLOT by sending them to the slot's master).
	"cluster|info":                  {policy: Local},
	"cluster|myid":                  {policy: Local},
	"cluster|myshardid":             {policy: Local}, // Redis 7.2
	"cluster|keyslot":               {policy: Local},
	"cluster|slots":                 {policy: Local},
	"cluster|shards":                {policy: Local},
	"cluster|nodes":                 {policy: Local},
	"cluster|countkeysinslot":       {policy: Local},
	"cluster|getkeysinslot":         {policy: Local},
	"cluster|links":                 {policy: Unsupported, reason: whySingleNode},
	"cluster|replicas":              {policy: Unsupported, reason: whySingleNode},
	"cluster|slaves":                {policy: Unsupported, reason: whySingleNode},
	"cluster|count-failure-reports": {policy: Unsupported, reason: whySingleNode},
	"cluster|addslots":              {policy: Unsupported, reason: whyTopology},
	"cluster|addslotsrange":         {policy: Unsupported, reason: whyTopology},
	"cluster|delslots":              {policy: Unsupported, reason: whyTopology},
	"cluster|delslotsrange":         {policy: Unsupported, reason: whyTopology},
	"cluster|flushslots":            {policy: Unsupported, reason: whyTopology},
	"cluster|setslot":               {policy: Unsupported, reason: whyTopology},
	"cluster|meet":                  {policy: Unsupported, reason: whyTopology},
	"cluster|forget":                {policy: Unsupported, reason: whyTopology},
	"cluster|replicate":             {policy: Unsupported, reason: whyTopology},
	"cluster|failover":              {policy: Unsupported, reason: whyTopology},
	"cluster|reset":                 {policy: Unsupported, reason: whyTopology},
	"cluster|saveconfig":            {policy: Unsupported, reason: whyTopology},
	"cluster|bumpepoch":             {policy: Unsupported, reason: whyTopology},
	"cluster|set-config-epoch":      {policy: Unsupported, reason: whyTopology},
	// The proxy follows MOVED and ASK itself; a client's ASKING would flag
	// a shared backend connection for someone else's next command.
	"asking": {policy: Unsupported, reason: "the proxy follows cluster redirections itself"},

	// --- Multi-key commands split by slot.
	"mget":   {policy: Split, merge: ByPosition, keyStep: 1},
	"mset":   {policy: Split, merge: AllOK, keyStep: 2},
	"del":    {policy: Split, merge: Sum, keyStep: 1},
	"unlink": {policy: Split, merge: Sum, keyStep: 1},
	"exists": {policy: Split, merge: Sum, keyStep: 1},
	"touch":  {policy: Split, merge: Sum, keyStep: 1},
	// Not split, on purpose (Forward: CROSSSLOT unless one slot): MSETNX
	// sets all or none, which per-slot commands cannot promise; PFCOUNT of
	// several keys is the cardinality of their union, not a sum.

	// --- Sent to every master.
	"dbsize":   {policy: AllMasters, merge: Sum},
	"keys":     {policy: AllMasters, merge: Concat},
	"flushall": {policy: AllMasters, merge: AllOK},
	"flushdb":  {policy: AllMasters, merge: AllOK},
	// One master's RANDOMKEY is nil when it is empty and others are not.
	"randomkey": {policy: AllMasters, merge: FirstNonNil},
	// Scripts and functions are per node: loading them everywhere lets
	// EVALSHA and FCALL run on whichever master owns the keys.
	"script|load":      {policy: AllMasters, merge: FirstReply},
	"script|exists":    {policy: AllMasters, merge: AndArrays},
	"script|flush":     {policy: AllMasters, merge: AllOK},
	"script|kill":      {policy: AllMasters, merge: AnyOK},
	"function|load":    {policy: AllMasters, merge: FirstReply},
	"function|delete":  {policy: AllMasters, merge: AllOK},
	"function|flush":   {policy: AllMasters, merge: AllOK},
	"function|restore": {policy: AllMasters, merge: AllOK},
	"function|kill":    {policy: AllMasters, merge: AnyOK},
	"function|list":    {policy: AllMasters, merge: FirstReply}, // fails if a master fails
	"function|dump":    {policy: AllMasters, merge: FirstReply},
	"memory|purge":     {policy: AllMasters, merge: AllOK},
	// The proxy keeps its own slow log (client-side times, stage by stage).
	"slowlog|get":   {policy: Local},
	"slowlog|len":   {policy: Local},
	"slowlog|reset": {policy: Local},
	// Pub/Sub subscriptions are per node (a channel's subscribers may be on
	// several); sharded channels live on their slot's master.
	"pubsub|channels":      {policy: AllMasters, merge: Union},
	"pubsub|numpat":        {policy: AllMasters, merge: Sum},
	"pubsub|numsub":        {policy: AllMasters, merge: SumPairs},
	"pubsub|shardchannels": {policy: AllMasters, merge: Concat},
	"pubsub|shardnumsub":   {policy: AllMasters, merge: SumPairs},

	// --- Commands that may block their connection.
	"blpop":      {policy: Blocking},
	"brpop":      {policy: Blocking},
	"brpoplpush": {policy: Blocking},
	"blmove":     {policy: Blocking},
	"blmpop":     {policy: Blocking},
	"bzpopmin":   {policy: Blocking},
	"bzpopmax":   {policy: Blocking},
	"bzmpop":     {policy: Blocking},
	// XREAD and XREADGROUP block only with BLOCK: Spec.Blocks tells.
	"xread":      {policy: Blocking, blocks: xreadBlocks},
	"xreadgroup": {policy: Blocking, blocks: xreadBlocks},
	// WAIT and WAITAOF wait for the writes of their own connection to
	// replicate: they need the connection that made them.
	"wait":    {policy: Blocking},
	"waitaof": {policy: Blocking}, // Redis 7.2

	// --- Transactions.
	"multi":   {policy: Transaction},
	"exec":    {policy: Transaction},
	"discard": {policy: Transaction},
	"watch":   {policy: Transaction},
	"unwatch": {policy: Transaction},

	// --- Subscribed mode. PUBLISH (keyless: any node, the cluster
	// propagates it) and SPUBLISH (routed by its channel) are Forward.
	"subscribe":    {policy: PubSub},
	"psubscribe":   {policy: PubSub},
	"unsubscribe":  {policy: PubSub},
	"punsubscribe": {policy: PubSub},
	"ssubscribe":   {policy: PubSub},
	"sunsubscribe": {policy: PubSub},

	"scan": {policy: Scan},

	// --- Key finders replacing key specs that cannot be followed (Redis's
	// getkeys_proc). SORT's STORE key spec is "unknown": the keyword can
	// be anywhere among the options. SORT stays Forward.
	"sort": {keys: sortKeys},

	// --- Refused.
	"migrate": {policy: Unsupported, keys: migrateKeys,
		reason: "it moves keys between nodes behind the proxy's back: run it on the nodes directly"},
	"restore-asking": {policy: Unsupported, reason: "it is internal to MIGRATE"},
	"move":           {policy: Unsupported, reason: whyDB},
	"swapdb":         {policy: Unsupported, reason: whyDB},
	"sync":           {policy: Unsupported, reason: whyReplication},
	"psync":          {policy: Unsupported, reason: whyReplication},
	"replconf":       {policy: Unsupported, reason: whyReplication},
	"replicaof":      {policy: Unsupported, reason: whyReplication},
	"slaveof":        {policy: Unsupported, reason: whyReplication},
	"failover":       {policy: Unsupported, reason: whyReplication},
	"shutdown":       {policy: Unsupported, reason: "it would stop one node of the cluster"},
	"debug":          {policy: Unsupported, reason: whyDiagnostics},
	"save":           {policy: Unsupported, reason: whyPersistence},
	"bgsave":         {policy: Unsupported, reason: whyPersistence},
	"bgrewriteaof":   {policy: Unsupported, reason: whyPersistence},
	// LASTSAVE stays Forward: it answers for one master, which tells a
	// client that persistence runs; per-node detail needs the node itself.
	// CONFIG GET stays Forward: settings are normally alike on every node
	// (per-node ones such as port answer for one master).
	// CONFIG SET goes to every node, replicas included, so that a setting
	// survives a failover; OK only if every node took it.
	"config|set":       {policy: AllNodes, merge: AllOK},
	"config|rewrite":   {policy: Unsupported, reason: whyConfig},
	"config|resetstat": {policy: Unsupported, reason: whyConfig},
	// ACL CAT, GENPASS and HELP are alike everywhere: Forward.
	"acl|setuser": {policy: Unsupported, reason: whyACL},
	"acl|deluser": {policy: Unsupported, reason: whyACL},
	"acl|getuser": {policy: Local}, // the proxy's users, as it checks them
	"acl|users":   {policy: Local}, // the proxy's users, as DRYRUN checks them
	"acl|list":    {policy: Local},
	"acl|load":    {policy: Unsupported, reason: whyACL},
	"acl|save":    {policy: Unsupported, reason: whyACL},
	"acl|log":     {policy: Local},
	"acl|dryrun":  {policy: Local},
	// The proxy authenticates its clients itself: it names the client's
	// proxy user.
	"acl|whoami": {policy: Local},
	// MODULE LIST stays Forward: modules are expected alike on every node.
	"module|load":         {policy: Unsupported, reason: whyModules},
	"module|loadex":       {policy: Unsupported, reason: whyModules},
	"module|unload":       {policy: Unsupported, reason: whyModules},
	"latency|latest":      {policy: Unsupported, reason: whyDiagnostics},
	"latency|history":     {policy: Unsupported, reason: whyDiagnostics},
	"latency|graph":       {policy: Unsupported, reason: whyDiagnostics},
	"latency|doctor":      {policy: Unsupported, reason: whyDiagnostics},
	"latency|histogram":   {policy: Unsupported, reason: whyDiagnostics},
	"latency|reset":       {policy: Unsupported, reason: whyDiagnostics},
	"memory|doctor":       {policy: Unsupported, reason: whyDiagnostics},
	"memory|stats":        {policy: Unsupported, reason: whyDiagnostics},
	"memory|malloc-stats": {policy: Unsupported, reason: whyDiagnostics},
	// FUNCTION STATS reports the function running on one node.
	"function|stats": {policy: Unsupported, reason: whyDiagnostics},
	"script|debug":   {policy: Unsupported, reason: "script debugging needs a dedicated connection to one node"},
}

// applyOverride sets the proxy's handling of s.
func applyOverride(s *Spec) {
	if o, ok := overrides[s.Name]; ok {
		s.Policy, s.Merge, s.KeyStep, s.Reason = o.policy, o.merge, o.keyStep, o.reason
		s.keys, s.blocks = o.keys, o.blocks
	}
}
