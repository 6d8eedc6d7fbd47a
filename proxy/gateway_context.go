package proxy

// ContextConfig configures the context gateway commands. Every zero field
// means the documented default.
type ContextConfig struct{}

// contextCommands builds the context gateway commands.
func (s *Server) contextCommands() ([]gatewayCommand, error) { return nil, nil }
