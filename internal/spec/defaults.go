package spec

import "time"

// Defaults of fields a spec may leave out. Validation, the JSON Schema and
// the field docs in spec.go describe the same values.
const (
	DefaultReplicas          = 1
	DefaultInterval          = 2 * time.Second
	DefaultTimeout           = 1 * time.Second
	DefaultThreshold         = 3
	DefaultLivenessThreshold = 6
	DefaultReadyTimeout      = 60 * time.Second

	// DefaultVolumeSize is what a cluster reserves for a volume without
	// a size.
	DefaultVolumeSize Quantity = "1Gi"
)

// Defaults fills in every field the spec left out, in place: one replica,
// when health is absent a TCP probe, and each volume's size. It is idempotent and does not
// validate; Parse does not call it, so that a stored spec says only what
// its author wrote. Call it before turning a spec into what runs.
//
// After Defaults, Health.LivenessThreshold is never nil: 0 there means the
// author turned restarts on failed probes off.
func (s *Spec) Defaults() {
	if s.Replicas == nil {
		s.Replicas = intPtr(DefaultReplicas)
	}
	if s.Health == nil {
		s.Health = &Health{}
	}
	s.Health.defaults()
	for i := range s.Volumes {
		if s.Volumes[i].Size == "" {
			s.Volumes[i].Size = DefaultVolumeSize
		}
	}
}

func (h *Health) defaults() {
	if h.Path == "" {
		h.TCP = true
	}
	if h.Interval == 0 {
		h.Interval = Duration(DefaultInterval)
	}
	if h.Timeout == 0 {
		h.Timeout = min(Duration(DefaultTimeout), h.Interval)
	}
	if h.Threshold == 0 {
		h.Threshold = DefaultThreshold
	}
	if h.LivenessThreshold == nil {
		h.LivenessThreshold = intPtr(DefaultLivenessThreshold)
	}
	if h.ReadyTimeout == 0 {
		h.ReadyTimeout = Duration(DefaultReadyTimeout)
	}
}

func intPtr(n int) *int {
	return &n
}
