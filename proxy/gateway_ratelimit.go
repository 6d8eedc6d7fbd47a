package proxy

// RateLimitConfig configures the ratelimit gateway commands. Every zero field
// means the documented default.
type RateLimitConfig struct{}

// rateLimitCommands builds the ratelimit gateway commands.
func (s *Server) rateLimitCommands() ([]gatewayCommand, error) { return nil, nil }
