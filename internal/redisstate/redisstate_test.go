package redisstate

import (
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// TestLostOnceBackOnce: however many calls fail, the loss is logged once
// and Skip holds for the retry interval; the first call that answers
// logs the return once and runs the OnRecover functions.
func TestLostOnceBackOnce(t *testing.T) {
	log, hook := test.NewNullLogger()
	now := time.Unix(1000, 0)
	s := New(log, "going on alone", 5*time.Second, func() time.Time { return now })
	recovered := make(chan struct{}, 1)
	s.OnRecover(func() { recovered <- struct{}{} })

	s.Note(nil)
	if s.Health() != nil || s.Skip() || len(hook.Entries) != 0 {
		t.Fatalf("Redis answering: health %v, skip %v, %d log lines; want nil, false, none", s.Health(), s.Skip(), len(hook.Entries))
	}
	s.Note(errors.New("dial tcp: connection refused"))
	s.Note(errors.New("dial tcp: connection refused"))
	if n := len(hook.Entries); n != 1 || hook.LastEntry().Level != logrus.WarnLevel || hook.LastEntry().Message != "redis unavailable: going on alone" {
		t.Fatalf("%d log lines after two failures (%v), want one warning", n, hook.AllEntries())
	}
	if s.Health() == nil || !s.Skip() {
		t.Errorf("after a failure: health %v, skip %v; want an error, and Redis left alone", s.Health(), s.Skip())
	}
	now = now.Add(5 * time.Second)
	if s.Skip() {
		t.Error("Redis still left alone after the retry interval")
	}
	s.Note(nil)
	s.Note(nil)
	if n := len(hook.Entries); n != 2 || hook.LastEntry().Message != "redis answers again" {
		t.Errorf("%d log lines after the return (%v), want the loss and one return", n, hook.AllEntries())
	}
	if s.Health() != nil {
		t.Errorf("health %v after the return, want nil", s.Health())
	}
	select {
	case <-recovered:
	case <-time.After(10 * time.Second):
		t.Error("OnRecover was not called when Redis answered again")
	}
}
