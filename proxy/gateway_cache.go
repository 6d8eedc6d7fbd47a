package proxy

// CacheConfig configures the cache gateway commands. Every zero field
// means the documented default.
type CacheConfig struct{}

// cacheCommands builds the cache gateway commands.
func (s *Server) cacheCommands() ([]gatewayCommand, error) { return nil, nil }
