package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decodeJSON parses one JSON document into maps, slices, strings, bools and
// json.Numbers (so that 10 and 10.0 both read as numbers without loss). A
// UTF-8 byte order mark, as some Windows editors write, is skipped.
func decodeJSON(data []byte) (any, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file, expected a JSON value")
		}
		return nil, jsonPosition(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON value at %s", lineCol(data, dec.InputOffset()))
	}
	return v, nil
}

// jsonPosition adds a line and column to a syntax error.
func jsonPosition(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the bytes read, the offending one included.
		return fmt.Errorf("invalid JSON at %s: %v", lineCol(data, se.Offset-1), se)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// lineCol gives the 1-based line and column of the byte at off.
func lineCol(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// isComment reports whether a key is a comment: keys beginning with "_"
// anywhere, and the bare "description" keys the old example files carry.
func isComment(key string) bool { return strings.HasPrefix(key, "_") || key == "description" }

// object reads one JSON object. Each getter reads one key, reports a wrong
// type or range as an error naming the key, and leaves its destination
// untouched when the key is absent or null, so defaults set beforehand
// survive. finish warns about the keys nobody read. All methods are no-ops
// on a nil *object, which stands for an absent block.
type object struct {
	d    *diag
	at   where
	path string // dotted path of this object; "" for a top-level record
	m    map[string]any
	used map[string]bool
}

// newObject wraps v, which must be a JSON object; otherwise it reports an
// error for field and returns nil.
func newObject(d *diag, at where, field string, v any) *object {
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(at, field, "must be a JSON object, not %s", jsonType(v))
		return nil
	}
	return &object{d: d, at: at, path: field, m: m, used: map[string]bool{}}
}

// field is the dotted name of key inside o.
func (o *object) field(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// get returns the value of key, marking it read; ok is false when the key is
// absent or null.
func (o *object) get(key string) (v any, ok bool) {
	if o == nil {
		return nil, false
	}
	if o.d.keys != nil {
		o.d.keys.note(o.at, o.field(key), keyRead)
	}
	v, ok = o.m[key]
	if ok {
		o.used[key] = true
	}
	return v, ok && v != nil
}

func (o *object) errorf(key, format string, args ...any) {
	o.d.errorf(o.at, o.field(key), format, args...)
}

func (o *object) warnf(key, format string, args ...any) {
	o.d.warnf(o.at, o.field(key), format, args...)
}

// child returns the object under key, or nil when it is absent.
func (o *object) child(key string) *object {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	return newObject(o.d, o.at, o.field(key), v)
}

// ignore marks keys that are accepted for compatibility and have no effect.
func (o *object) ignore(keys ...string) {
	if o == nil {
		return
	}
	for _, k := range keys {
		if o.d.keys != nil {
			o.d.keys.note(o.at, o.field(k), keyIgnored)
		}
		if _, ok := o.m[k]; ok {
			o.used[k] = true
		}
	}
}

// finish warns about every key that was not read and is not a comment.
func (o *object) finish() {
	if o == nil {
		return
	}
	var unknown []string
	for k := range o.m {
		if !o.used[k] && !isComment(k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		o.warnf(k, "unknown key, ignored")
	}
}

// str reads a string. An empty string counts as absent, as the old tool
// wrote "" for unset optional fields.
func (o *object) str(key string, dst *string) bool {
	v, ok := o.get(key)
	if !ok {
		return false
	}
	s, isStr := v.(string)
	if !isStr {
		o.errorf(key, "must be a string, not %s", jsonType(v))
		return false
	}
	if s == "" {
		return false
	}
	*dst = s
	return true
}

func (o *object) boolean(key string, dst *bool) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	b, isBool := v.(bool)
	if !isBool {
		o.errorf(key, "must be true or false, not %s", jsonType(v))
		return
	}
	*dst = b
}

// number reads a JSON number as a float64.
func (o *object) number(key string) (float64, bool) {
	v, ok := o.get(key)
	if !ok {
		return 0, false
	}
	n, isNum := v.(json.Number)
	if !isNum {
		o.errorf(key, "must be a number, not %s", jsonType(v))
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		o.errorf(key, "number %s out of range", n)
		return 0, false
	}
	return f, true
}

// whole reads a whole number in [lo, hi]; 10 and 10.0 are both accepted.
func (o *object) whole(key string, lo, hi int64) (int64, bool) {
	f, ok := o.number(key)
	if !ok {
		return 0, false
	}
	switch {
	case f != math.Trunc(f):
		o.errorf(key, "must be a whole number, not %v", f)
	case f < float64(lo):
		o.errorf(key, "must be at least %d, not %v", lo, f)
	case f > float64(hi):
		o.errorf(key, "must be at most %d, not %v", hi, f)
	default:
		return int64(f), true
	}
	return 0, false
}

// maxCount bounds counts so they fit an int on every platform.
const maxCount = math.MaxInt32

// count reads a whole number of at least lo into an int.
func (o *object) count(key string, lo int, dst *int) {
	if n, ok := o.whole(key, int64(lo), maxCount); ok {
		*dst = int(n)
	}
}

// size reads a positive byte count into an int64.
func (o *object) size(key string, dst *int64) {
	if n, ok := o.whole(key, 1, 1<<53); ok {
		*dst = n
	}
}

// maxSeconds bounds durations far below time.Duration's range.
const maxSeconds = 100 * 365 * 24 * 3600

// seconds reads a duration written in seconds (fractions allowed). With
// positive set, zero is refused.
func (o *object) seconds(key string, positive bool, dst *time.Duration) {
	f, ok := o.number(key)
	if !ok {
		return
	}
	switch {
	case f < 0 || (positive && f == 0):
		o.errorf(key, "must be a positive number of seconds, not %v", f)
	case f > maxSeconds:
		o.errorf(key, "must be at most %d seconds, not %v", maxSeconds, f)
	case positive && f*float64(time.Second) < 1:
		// Below a nanosecond the duration would be zero, which callers
		// read as "use the default" or "no limit" (found by FuzzLoadConfig).
		o.errorf(key, "must be at least a nanosecond, not %v seconds", f)
	default:
		*dst = time.Duration(f * float64(time.Second))
	}
}

// fraction reads a non-negative float.
func (o *object) fraction(key string, dst *float64) {
	f, ok := o.number(key)
	if !ok {
		return
	}
	if f < 0 {
		o.errorf(key, "must not be negative, not %v", f)
		return
	}
	*dst = f
}

// jsonType names the JSON type of a decoded value for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
