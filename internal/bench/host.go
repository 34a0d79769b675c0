package bench

// Host is a simulated machine: a network namespace of its own.
type Host struct {
	Name string
}

// NewHost creates the namespace name.
func NewHost(name string) (*Host, error) {
	if err := addNetns(name); err != nil {
		return nil, err
	}
	return &Host{Name: name}, nil
}

// Close removes the namespace and everything in it.
func (h *Host) Close() error { return delNetns(h.Name) }
