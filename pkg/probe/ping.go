package probe

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Echo is a one-shot series of echoes to one address (Ping).
type Echo struct {
	Addr         netip.Addr
	Size         int           // ICMP payload bytes (0: 56; at least 8, the token that marks our replies)
	DontFragment bool          // set DF, so a packet larger than a link on the path is dropped, not fragmented
	Count        int           // echoes (0: 3), sent Interval apart
	Interval     time.Duration // 0: 200ms
	Timeout      time.Duration // per echo (0: 1s)
}

func (e Echo) withDefaults() Echo {
	if e.Size <= 0 {
		e.Size = 56
	}
	if e.Count <= 0 {
		e.Count = 3
	}
	if e.Interval <= 0 {
		e.Interval = 200 * time.Millisecond
	}
	if e.Timeout <= 0 {
		e.Timeout = time.Second
	}
	return e
}

// Ping sends e.Count echoes to e.Addr from the calling thread's network
// namespace, on a raw socket of its own (so it runs beside Probers and
// other Pings), and returns what came back: Loss over all echoes,
// LostInRow of the last ones. It returns when every echo is answered or
// timed out. The error is only for not being able to send: no raw socket,
// no route, or (errors.Is ErrTooBig) a DontFragment echo larger than the
// local route's MTU; or ctx ending, with the stats so far.
func Ping(ctx context.Context, e Echo) (PathStats, error) {
	var st PathStats
	if !e.Addr.Is4() {
		return st, fmt.Errorf("ping %s: only IPv4 addresses can be pinged", e.Addr)
	}
	e = e.withDefaults()
	c, err := listen(newIdentity(), e.DontFragment)
	if err != nil {
		return st, err
	}
	replies := make(chan reply, e.Count)
	var wg sync.WaitGroup
	wg.Go(func() {
		c.readLoop(func(r reply) {
			select {
			case replies <- r:
			default: // a duplicate beyond Count: not needed
			}
		})
	})
	defer wg.Wait()
	defer c.Close()

	sent := make([]time.Time, e.Count) // by seq-1; zero: not sent yet
	answered := make([]bool, e.Count)
	tick := time.NewTimer(0)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	next := 0 // next echo to send
	for open := 0; next < e.Count || open > 0; {
		select {
		case <-ctx.Done():
			return pingStats(st, answered, next), ctx.Err()
		case <-tick.C:
			// Stamped before sending: the reply can be read before send returns.
			sent[next] = time.Now()
			if err := c.send(e.Addr, uint16(next+1), e.Size); err != nil {
				return pingStats(st, answered, next), fmt.Errorf("ping: %w", err)
			}
			next++
			open++
			if next < e.Count {
				tick.Reset(e.Interval)
			}
			deadline.Reset(time.Until(oldestOpen(sent, answered, next).Add(e.Timeout)))
		case r := <-replies:
			i := int(r.seq) - 1
			if r.from != e.Addr || i < 0 || i >= next || answered[i] || r.at.Sub(sent[i]) >= e.Timeout {
				continue
			}
			answered[i], open = true, open-1
			st.Received++
			st.RTT, st.LastReply = r.at.Sub(sent[i]), r.at
			if open > 0 {
				deadline.Reset(time.Until(oldestOpen(sent, answered, next).Add(e.Timeout)))
			}
		case <-deadline.C:
			// Every echo sent more than Timeout ago and unanswered is lost.
			now := time.Now()
			for i := range next {
				if !answered[i] && !sent[i].IsZero() && now.Sub(sent[i]) >= e.Timeout {
					sent[i] = time.Time{} // lost: stop waiting for it
					open--
				}
			}
			if open > 0 {
				deadline.Reset(time.Until(oldestOpen(sent, answered, next).Add(e.Timeout)))
			}
		}
	}
	return pingStats(st, answered, next), nil
}

// oldestOpen is the send time of the oldest echo still awaited.
func oldestOpen(sent []time.Time, answered []bool, n int) time.Time {
	for i := range n {
		if !answered[i] && !sent[i].IsZero() {
			return sent[i]
		}
	}
	return time.Now()
}

func pingStats(st PathStats, answered []bool, sent int) PathStats {
	st.Sent = uint64(sent)
	if sent > 0 {
		st.Loss = float64(sent-int(st.Received)) / float64(sent)
	}
	for i := sent - 1; i >= 0 && !answered[i]; i-- {
		st.LostInRow++
	}
	return st
}
