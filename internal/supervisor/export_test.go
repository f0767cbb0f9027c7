package supervisor

// SetCrashHook makes s call fn at its crash points ("scale.persisted",
// "shrink.persisted", "start.returned", "remove.persisted",
// "deleteset.persisted"), so a test can kill the process exactly there.
func SetCrashHook(s *Supervisor, fn func(point string)) { s.crashHook = fn }
