package bench

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"
)

// lineStamper passes a process's output on to w and remembers when each
// line arrived, so a measurement can use the moment a daemon logged
// something rather than the log's own millisecond timestamps or a poll.
type lineStamper struct {
	w io.Writer

	mu      sync.Mutex
	partial []byte
	lines   []stampedLine
	changed chan struct{} // closed and replaced on every new line
}

type stampedLine struct {
	at   time.Time
	text string
}

// maxStampedLines bounds what a chatty process costs the bench.
const maxStampedLines = 10000

func newLineStamper(w io.Writer) *lineStamper {
	return &lineStamper{w: w, changed: make(chan struct{})}
}

func (s *lineStamper) Write(b []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	s.partial = append(s.partial, b...)
	added := false
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		if len(s.lines) < maxStampedLines {
			s.lines = append(s.lines, stampedLine{at: now, text: string(s.partial[:i])})
			added = true
		}
		s.partial = s.partial[i+1:]
	}
	if added {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	return s.w.Write(b)
}

// find returns when the first line holding substr arrived, and a channel
// closed when another line arrives.
func (s *lineStamper) find(substr string) (time.Time, bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l.text, substr) {
			return l.at, true, s.changed
		}
	}
	return time.Time{}, false, s.changed
}
