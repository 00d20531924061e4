// IDX files (the MNIST container): a big-endian header, then the raw data.
//
//   bytes 0-1  zero
//   byte  2    type code: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//   byte  3    number of dimensions (>= 1)
//   then       one big-endian uint32 per dimension, then the data, big-endian, row-major
//
// Files may be gzip-compressed; that is detected from the content (1f 8b), not
// the name. Reading is two steps so the caller can allocate the destination
// (a NumPy array) between them and the data is written exactly once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mm {

// Every malformed input ends here, with the file's name and what is wrong.
struct IdxError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// The bytes themselves could not be read (I/O error, corrupt or cut gzip stream),
// as opposed to bytes that do not form a valid IDX file.
struct IdxStreamError : IdxError {
    using IdxError::IdxError;
};

struct IdxHeader {
    uint8_t type_code = 0;
    std::vector<uint64_t> dims;
    uint64_t count = 0;      // product of dims
    size_t itemsize = 0;
    uint64_t data_bytes = 0; // count * itemsize
};

// Bytes per element for a type code, 0 if the code is unknown.
size_t idx_itemsize(uint8_t type_code);

// A stream of the file's (decompressed) bytes.
class ByteSource {
public:
    virtual ~ByteSource() = default;
    // Reads up to n bytes; fewer only at the end of the data. Throws IdxError on corruption.
    virtual size_t read(void* dst, size_t n) = 0;
    // The most data bytes this source could possibly deliver, to refuse a header
    // that asks for an allocation the input cannot back.
    virtual uint64_t max_bytes() const = 0;
    virtual bool compressed() const = 0;
};

// Opens a file, raw or gzip by its first two bytes.
// path: the file's name as the OS's bytes (any encoding); name: as messages show it.
std::unique_ptr<ByteSource> open_idx_file(const std::string& path, const std::string& name);
// Wraps bytes already in memory (they must outlive the source), raw or gzip.
std::unique_ptr<ByteSource> open_idx_memory(const void* data, size_t size, const std::string& name);
bool have_zlib();

IdxHeader read_idx_header(ByteSource& src, const std::string& name);
// Thrown by read_idx_body when its stop function asked it to stop.
struct IdxInterrupted : std::exception {
    const char* what() const noexcept override { return "IDX read interrupted"; }
};
// Fills dst (header.data_bytes bytes) in native byte order, and checks that no
// bytes follow the data. stop (optional) is called between chunks of 16 MiB
// with ctx; a nonzero return stops the read with IdxInterrupted.
void read_idx_body(ByteSource& src, const IdxHeader& header, void* dst, const std::string& name,
                   int (*stop)(void* ctx) = nullptr, void* ctx = nullptr);

// Writes header + data (native order in, big-endian out) to a raw buffer.
std::vector<uint8_t> encode_idx(uint8_t type_code, const std::vector<uint64_t>& dims, const void* data);

}  // namespace mm
