package approval

import "context"

// FakeFire makes s fire each case a sweep finds due with fake instead of
// fireCase; fake may call real, the service's own.
func FakeFire(s *Service, fake func(ctx context.Context, kind, caseID string, real func(context.Context, string, string) error) error) {
	real := s.fireCase
	s.fire = func(ctx context.Context, kind, caseID string) error { return fake(ctx, kind, caseID, real) }
}

// BackoffCases is how many cases s holds back after their due action
// failed.
func BackoffCases(s *Service) int {
	s.backoffs.mu.Lock()
	defer s.backoffs.mu.Unlock()
	return len(s.backoffs.m)
}
