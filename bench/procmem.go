package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// errNoPeak says a process has no VmHWM line (it has ended).
var errNoPeak = errors.New("no VmHWM in /proc status")

// peakRSS is the sum of the peak resident set sizes (VmHWM) of pids, in
// bytes. Pages shared between processes (nginx's cache zone) count once per
// process, so for several processes it is an upper bound.
func peakRSS(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		n, err := vmHWM(pid)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// vmHWM reads the peak resident set size of one process, in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmHWM of process %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("process %d: %w", pid, errNoPeak)
}

// parentPID reads the parent of pid from /proc/<pid>/stat.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process %d: %w", pid, err)
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too short", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("parse parent of process %d: %w", pid, err)
	}
	return ppid, nil
}

// childrenOf lists the live children of ppid.
func childrenOf(ppid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := parentPID(pid); err == nil && p == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// childPID finds the one child of this process running bin.
// internal/proxytest does not expose the process it starts.
func childPID(bin string) (int, error) {
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return 0, fmt.Errorf("resolve %s: %w", bin, err)
	}
	var found []int
	for _, pid := range childrenOf(os.Getpid()) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && exe == want {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("find the process of %s: %d candidates %v", bin, len(found), found)
	}
	return found[0], nil
}
