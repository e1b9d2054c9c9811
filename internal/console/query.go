package console

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
)

// listQuery is the accounts table's search, filters, order and page, read
// from the query string so that the table works without script.
type listQuery struct {
	Q        string // substring of the email or account_id, any case
	Provider string // "" any
	State    string // "" any, else one of States
	Sort     string // one of sortKeys
	Desc     bool
	Page     int // from 1
	Per      int // rows per page
}

// sortKeys are the columns the table sorts by.
var sortKeys = []string{"email", "state", "sessions", "budget", "error"}

// perPage are the page sizes offered; the first is the default.
var perPage = []int{50, 100, 200}

// maxQueryChars bounds the search text.
const maxQueryChars = 200

// parseQuery reads a listQuery; anything unknown or out of range falls
// back to the default.
func parseQuery(v url.Values) listQuery {
	q := listQuery{Sort: "email", Page: 1, Per: perPage[0]}
	q.Q = v.Get("q")
	if len(q.Q) > maxQueryChars {
		q.Q = q.Q[:maxQueryChars]
	}
	q.Q = strings.TrimSpace(strings.ToValidUTF8(q.Q, ""))
	if p := v.Get("provider"); p != "" && len(p) <= 40 {
		q.Provider = strings.ToValidUTF8(p, "")
	}
	if s := v.Get("state"); slices.Contains(States, s) {
		q.State = s
	}
	if s := v.Get("sort"); slices.Contains(sortKeys, s) {
		q.Sort = s
	}
	q.Desc = v.Get("dir") == "desc"
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n >= 1 && n <= 1_000_000 {
		q.Page = n
	}
	if n, err := strconv.Atoi(v.Get("per")); err == nil && slices.Contains(perPage, n) {
		q.Per = n
	}
	return q
}

// values is q as query parameters (defaults left out), for links.
func (q listQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s, def string) {
		if s != def {
			v.Set(k, s)
		}
	}
	set("q", q.Q, "")
	set("provider", q.Provider, "")
	set("state", q.State, "")
	set("sort", q.Sort, "email")
	if q.Desc {
		v.Set("dir", "desc")
	}
	set("page", strconv.Itoa(q.Page), "1")
	set("per", strconv.Itoa(q.Per), strconv.Itoa(perPage[0]))
	return v
}

// with returns the link of q changed by fn.
func (q listQuery) with(fn func(*listQuery)) string {
	fn(&q)
	if e := q.values().Encode(); e != "" {
		return "/accounts?" + e
	}
	return "/accounts"
}

// listResult is one page of the table.
type listResult struct {
	Rows      []row
	Matched   int // rows that pass the search and filters
	Total     int // all accounts
	Pages     int
	Providers []string // for the filter
}

// list filters, sorts and pages the accounts. The search and provider
// filter read only the configuration; the live state is read for the
// accounts that pass them.
func (c *Console) list(all []*account.Account, q listQuery, now time.Time) listResult {
	res := listResult{Total: len(all)}
	provs := map[string]bool{}
	needle := strings.ToLower(q.Q)
	rows := make([]row, 0, len(all))
	for _, a := range all {
		provs[a.Cfg.Provider] = true
		if q.Provider != "" && a.Cfg.Provider != q.Provider {
			continue
		}
		if needle != "" && !strings.Contains(strings.ToLower(a.Cfg.Email), needle) &&
			!strings.Contains(strings.ToLower(a.Cfg.ID), needle) {
			continue
		}
		r := c.rowOf(a, now)
		if q.State != "" && r.State != q.State {
			continue
		}
		rows = append(rows, r)
	}
	for p := range provs {
		res.Providers = append(res.Providers, p)
	}
	slices.Sort(res.Providers)
	slices.SortStableFunc(rows, func(a, b row) int {
		n := compareRows(q.Sort, a, b)
		if n == 0 {
			n = cmp.Compare(strings.ToLower(a.Email), strings.ToLower(b.Email))
		}
		if q.Desc {
			n = -n
		}
		return n
	})
	res.Matched = len(rows)
	res.Pages = max(1, (len(rows)+q.Per-1)/q.Per)
	start := min((q.Page-1)*q.Per, len(rows))
	res.Rows = rows[start:min(start+q.Per, len(rows))]
	return res
}

func compareRows(key string, a, b row) int {
	switch key {
	case "state":
		return cmp.Compare(slices.Index(States, a.State), slices.Index(States, b.State))
	case "sessions":
		return cmp.Compare(a.Sessions.Busy, b.Sessions.Busy)
	case "budget":
		return cmp.Compare(fraction(a.Day.Used, a.Day.Limit), fraction(b.Day.Used, b.Day.Limit))
	case "error":
		return a.LastErrorAt.Compare(b.LastErrorAt)
	}
	return 0
}

func fraction(used, limit int) float64 {
	if limit <= 0 {
		return 0
	}
	return float64(used) / float64(limit)
}
