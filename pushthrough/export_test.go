package pushthrough

// LockSessions takes the write-through's table of upload sessions, as a
// wedged upload path would hold it, for the tests outside the package.
func (wt *WriteThrough) LockSessions() { wt.lock() }

// UnlockSessions releases what LockSessions took.
func (wt *WriteThrough) UnlockSessions() { wt.unlock() }
