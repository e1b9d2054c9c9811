// Package quota keeps each account's sending budgets: messages per minute,
// hour and day, recipients per day over rolling windows, recipients per
// message, and cool-downs learned from the provider. The relay asks at
// MAIL (Admit) and at each RCPT (Ticket.Rcpt) so that the client hears
// "no budget" before it sends a body, and reports the outcome at the end
// (Ticket.Done): a message counts only when the upstream accepted it,
// recipients only when accepted.
//
// Windows are rings of buckets (1 s for the minute, 1 min for the hour,
// 10 min for the day), so memory per account is fixed (about 2 KB, only
// for accounts that sent) and the reset time given to the client is exact
// to one bucket. Each ring has one bucket more than its span, so a count
// stays in its window for at least the full span (a minute, an hour, 24 h)
// and at most one bucket longer: a budget errs towards sending later,
// never towards sending more than the provider's rolling limit allows. Messages in flight hold a reservation, so concurrent
// transactions cannot overshoot a budget together.
//
// Book is the local implementation, persisted with Save/Load (a periodic
// flush and one at shutdown; a crash loses at most the counts since the
// last flush). It sits behind the Budget interface so that a shared store
// can replace it when several proxies serve the same accounts. The clock
// is injected. Safe for concurrent use.
package quota
