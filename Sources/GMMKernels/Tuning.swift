internal import Glibc
func tuning(_ name: String, _ value: Int) -> Int {
  if let v = getenv(name), let i = Int(String(cString: v)) { return i }
  return value
}
