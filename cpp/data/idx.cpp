#include "data/idx.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#ifdef MNIST_MLP_HAVE_ZLIB
#include <zlib.h>
#endif

namespace mm {

namespace {

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
// deflate cannot compress better than about 1032:1; a header that claims more
// data than that ratio allows is a decompression bomb or a lie.
constexpr uint64_t kMaxDeflateRatio = 1032;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
    throw IdxError(name + ": " + what);
}

[[noreturn]] void fail_stream(const std::string& name, const std::string& what) {
    throw IdxStreamError(name + ": " + what);
}

std::string hex(unsigned v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
    return buf;
}

void byteswap(void* data, uint64_t count, size_t itemsize) {
    if (kLittleEndian == false || itemsize == 1) return;
    auto* p = static_cast<uint8_t*>(data);
    for (uint64_t i = 0; i < count; ++i, p += itemsize)
        for (size_t a = 0, b = itemsize - 1; a < b; ++a, --b) std::swap(p[a], p[b]);
}

// Where compressed or raw bytes come from.
class Input {
public:
    virtual ~Input() = default;
    virtual size_t read(void* dst, size_t n) = 0;
    virtual uint64_t size() const = 0;
};

class FileInput : public Input {
public:
    // path: the bytes the OS knows the file by; name: how messages show it
    FileInput(const std::string& path, const std::string& name) : name_(name) {
        f_ = std::fopen(path.c_str(), "rb");
        if (!f_) fail(name, std::string("cannot open: ") + std::strerror(errno));
        if (std::fseek(f_, 0, SEEK_END) != 0) fail(name, "cannot seek (not a regular file?)");
        long s = std::ftell(f_);
        if (s < 0) fail(name, "cannot tell the file size");
        size_ = (uint64_t)s;
        std::rewind(f_);
    }
    ~FileInput() override { if (f_) std::fclose(f_); }
    size_t read(void* dst, size_t n) override {
        size_t got = std::fread(dst, 1, n, f_);
        if (got < n && std::ferror(f_)) fail_stream(name_, std::string("read error: ") + std::strerror(errno));
        return got;
    }
    uint64_t size() const override { return size_; }

private:
    std::string name_;
    std::FILE* f_ = nullptr;
    uint64_t size_ = 0;
};

class MemoryInput : public Input {
public:
    MemoryInput(const void* data, size_t size) : p_(static_cast<const uint8_t*>(data)), size_(size) {}
    size_t read(void* dst, size_t n) override {
        size_t take = std::min(n, size_ - pos_);
        if (take) std::memcpy(dst, p_ + pos_, take);
        pos_ += take;
        return take;
    }
    uint64_t size() const override { return size_; }

private:
    const uint8_t* p_;
    size_t size_, pos_ = 0;
};

// Raw bytes, with the first `peeked` bytes already read for format detection.
class RawSource : public ByteSource {
public:
    RawSource(std::unique_ptr<Input> in, const uint8_t* peeked, size_t npeek)
        : in_(std::move(in)), peek_(peeked, peeked + npeek) {}
    size_t read(void* dst, size_t n) override {
        auto* d = static_cast<uint8_t*>(dst);
        size_t got = 0;
        while (got < n && peek_pos_ < peek_.size()) d[got++] = peek_[peek_pos_++];
        if (got < n) got += in_->read(d + got, n - got);
        return got;
    }
    uint64_t max_bytes() const override { return in_->size(); }
    bool compressed() const override { return false; }

private:
    std::unique_ptr<Input> in_;
    std::vector<uint8_t> peek_;
    size_t peek_pos_ = 0;
};

#ifdef MNIST_MLP_HAVE_ZLIB
// Streams the inflated bytes of one or more concatenated gzip members.
class GzipSource : public ByteSource {
public:
    GzipSource(std::unique_ptr<Input> in, const uint8_t* peeked, size_t npeek, std::string name)
        : in_(std::move(in)), name_(std::move(name)), buf_(1 << 16) {
        std::memset(&zs_, 0, sizeof zs_);
        if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) fail_stream(name_, "zlib could not start inflating");
        std::memcpy(buf_.data(), peeked, npeek);
        zs_.next_in = buf_.data();
        zs_.avail_in = (uInt)npeek;
    }
    ~GzipSource() override { inflateEnd(&zs_); }
    size_t read(void* dst, size_t n) override {
        auto* out = static_cast<uint8_t*>(dst);
        size_t got = 0;
        while (got < n && !done_) {
            if (zs_.avail_in == 0 && !refill()) {
                fail_stream(name_, "truncated gzip stream (the compressed data ends before the gzip trailer)");
            }
            const size_t want = std::min<size_t>(n - got, 1u << 30);
            zs_.next_out = out + got;
            zs_.avail_out = (uInt)want;
            int rc = inflate(&zs_, Z_NO_FLUSH);
            got += want - zs_.avail_out;
            if (rc == Z_STREAM_END) {
                // Another gzip member may follow (as `cat a.gz b.gz` makes); anything else is garbage.
                if (zs_.avail_in == 0) refill();
                if (zs_.avail_in == 0) { done_ = true; break; }
                if (zs_.avail_in < 2 && !refill_keep()) {
                    fail_stream(name_, "trailing bytes after the gzip stream");
                }
                if (zs_.next_in[0] != 0x1f || zs_.next_in[1] != 0x8b)
                    fail_stream(name_, "trailing bytes after the gzip stream are not another gzip member");
                inflateReset(&zs_);
            } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
                fail_stream(name_, std::string("corrupt gzip data: ") + (zs_.msg ? zs_.msg : "invalid stream"));
            } else if (rc == Z_MEM_ERROR) {
                fail_stream(name_, "out of memory while inflating");
            } else if (rc == Z_BUF_ERROR) {
                if (zs_.avail_in == 0 && !refill())
                    fail_stream(name_, "truncated gzip stream (the compressed data ends before the gzip trailer)");
            } else if (rc != Z_OK) {
                fail_stream(name_, "zlib error " + std::to_string(rc));
            }
        }
        return got;
    }
    uint64_t max_bytes() const override { return in_->size() * kMaxDeflateRatio + 1024; }
    bool compressed() const override { return true; }

private:
    bool refill() {
        size_t got = in_->read(buf_.data(), buf_.size());
        zs_.next_in = buf_.data();
        zs_.avail_in = (uInt)got;
        return got > 0;
    }
    // Tops the buffer up keeping the unread bytes (to look at a next member's magic).
    bool refill_keep() {
        size_t keep = zs_.avail_in;
        std::memmove(buf_.data(), zs_.next_in, keep);
        size_t got = in_->read(buf_.data() + keep, buf_.size() - keep);
        zs_.next_in = buf_.data();
        zs_.avail_in = (uInt)(keep + got);
        return zs_.avail_in >= 2;
    }
    std::unique_ptr<Input> in_;
    std::string name_;
    std::vector<uint8_t> buf_;
    z_stream zs_;
    bool done_ = false;
};
#endif

std::unique_ptr<ByteSource> open_source(std::unique_ptr<Input> in, const std::string& name) {
    uint8_t head[2] = {0, 0};
    size_t n = in->read(head, 2);
    if (n == 2 && head[0] == 0x1f && head[1] == 0x8b) {
#ifdef MNIST_MLP_HAVE_ZLIB
        return std::make_unique<GzipSource>(std::move(in), head, n, name);
#else
        fail(name, "gzip input but this build has no zlib (inflate it with Python's gzip first)");
#endif
    }
    return std::make_unique<RawSource>(std::move(in), head, n);
}

}  // namespace

size_t idx_itemsize(uint8_t code) {
    switch (code) {
        case 0x08: case 0x09: return 1;
        case 0x0B: return 2;
        case 0x0C: case 0x0D: return 4;
        case 0x0E: return 8;
        default: return 0;
    }
}

bool have_zlib() {
#ifdef MNIST_MLP_HAVE_ZLIB
    return true;
#else
    return false;
#endif
}

std::unique_ptr<ByteSource> open_idx_file(const std::string& path, const std::string& name) {
    return open_source(std::make_unique<FileInput>(path, name), name);
}

std::unique_ptr<ByteSource> open_idx_memory(const void* data, size_t size, const std::string& name) {
    return open_source(std::make_unique<MemoryInput>(data, size), name);
}

static IdxHeader parse_header(ByteSource& src, const std::string& name);

IdxHeader read_idx_header(ByteSource& src, const std::string& name) {
    try {
        return parse_header(src, name);
    } catch (const IdxStreamError&) {
        throw;  // the stream's own error is the cause
    } catch (const IdxError&) {
        // A damaged gzip stream can inflate to a garbage header before zlib sees the bad
        // checksum; report the corruption, the real cause, when the stream has one.
        // Bounded: a bomb behind a bad header must not be inflated to the end.
        if (src.compressed()) {
            uint8_t sink[1 << 14];
            for (uint64_t seen = 0; seen < (uint64_t(16) << 20); seen += sizeof sink)
                if (src.read(sink, sizeof sink) < sizeof sink) break;
        }
        throw;
    }
}

static IdxHeader parse_header(ByteSource& src, const std::string& name) {
    uint8_t magic[4];
    size_t got = src.read(magic, 4);
    if (got < 4)
        fail(name, "truncated header: " + std::to_string(got) + " bytes, an IDX file starts with 4 magic bytes");
    if (magic[0] != 0 || magic[1] != 0)
        fail(name, "bad magic: the first two bytes must be 0x00 0x00, got " + hex(magic[0]) + " " + hex(magic[1]) +
                       " (not an IDX file?)");
    IdxHeader h;
    h.type_code = magic[2];
    h.itemsize = idx_itemsize(h.type_code);
    if (h.itemsize == 0)
        fail(name, "unknown type code " + hex(h.type_code) +
                       " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
    const int ndim = magic[3];
    if (ndim == 0) fail(name, "number of dimensions is 0 (must be at least 1)");
    std::vector<uint8_t> raw(4 * (size_t)ndim);
    got = src.read(raw.data(), raw.size());
    if (got < raw.size())
        fail(name, "truncated header: " + std::to_string(ndim) + " dimensions need " + std::to_string(raw.size()) +
                       " bytes, only " + std::to_string(got) + " present");
    uint64_t count = 1;
    bool overflow = false;
    for (int d = 0; d < ndim; ++d) {
        const uint8_t* b = raw.data() + 4 * d;
        uint64_t v = ((uint64_t)b[0] << 24) | ((uint64_t)b[1] << 16) | ((uint64_t)b[2] << 8) | b[3];
        h.dims.push_back(v);
        if (v != 0 && count > std::numeric_limits<uint64_t>::max() / v) overflow = true;
        count *= v;
    }
    auto dims_str = [&] {
        std::string s;
        for (size_t i = 0; i < h.dims.size(); ++i) s += (i ? " x " : "") + std::to_string(h.dims[i]);
        return s;
    };
    constexpr uint64_t kMaxBytes = uint64_t(1) << 48;
    if (overflow || count > kMaxBytes / h.itemsize)
        fail(name, "dimensions " + dims_str() + " overflow: the product of the dims is too large");
    h.count = count;
    h.data_bytes = count * h.itemsize;
    const uint64_t header_bytes = 4 + 4 * (uint64_t)ndim;
    const uint64_t cap = src.max_bytes();
    if (!src.compressed()) {
        const uint64_t have = cap >= header_bytes ? cap - header_bytes : 0;
        if (h.data_bytes > have)
            fail(name, "truncated data: dimensions " + dims_str() + " need " + std::to_string(h.data_bytes) +
                           " bytes, only " + std::to_string(have) + " present");
    } else if (h.data_bytes > cap) {
        fail(name, "dimensions " + dims_str() + " claim " + std::to_string(h.data_bytes) +
                       " bytes, more than this gzip file could inflate to (" + std::to_string(cap) +
                       "): refusing the allocation");
    }
    return h;
}

void read_idx_body(ByteSource& src, const IdxHeader& h, void* dst, const std::string& name, int (*stop)(void*),
                   void* ctx) {
    uint64_t done = 0;
    auto* out = static_cast<uint8_t*>(dst);
    while (done < h.data_bytes) {
        if (done && stop && stop(ctx)) throw IdxInterrupted();  // Ctrl-C, every 16 MiB (~40 ms of inflate)
        size_t want = (size_t)std::min<uint64_t>(h.data_bytes - done, uint64_t(1) << 24);
        size_t got = src.read(out + done, want);
        done += got;
        if (got < want)
            fail(name, "truncated data: the header declares " + std::to_string(h.data_bytes) + " bytes, only " +
                           std::to_string(done) + " present");
    }
    // Count what follows the data, up to a bound: a bomb of trailing zeros must not keep us busy.
    constexpr uint64_t kCountLimit = uint64_t(1) << 20;
    uint8_t extra[4096];
    uint64_t trailing = 0;
    for (;;) {
        size_t got = src.read(extra, sizeof extra);
        trailing += got;
        if (got < sizeof extra || trailing > kCountLimit) break;
    }
    if (trailing)
        fail(name, (trailing > kCountLimit ? "more than " + std::to_string(kCountLimit) : std::to_string(trailing)) +
                       " trailing bytes after the " + std::to_string(h.data_bytes) +
                       " bytes of data the header declares");
    byteswap(dst, h.count, h.itemsize);
}

std::vector<uint8_t> encode_idx(uint8_t code, const std::vector<uint64_t>& dims, const void* data) {
    const size_t itemsize = idx_itemsize(code);
    if (!itemsize) throw IdxError("unknown IDX type code " + hex(code));
    if (dims.empty() || dims.size() > 255) throw IdxError("IDX needs 1 to 255 dimensions");
    uint64_t count = 1;
    std::vector<uint8_t> out = {0, 0, code, (uint8_t)dims.size()};
    for (uint64_t d : dims) {
        if (d > 0xFFFFFFFFull) throw IdxError("IDX dimension " + std::to_string(d) + " does not fit in 32 bits");
        count *= d;
        for (int s = 24; s >= 0; s -= 8) out.push_back((uint8_t)(d >> s));
    }
    const size_t head = out.size();
    out.resize(head + count * itemsize);
    if (count) std::memcpy(out.data() + head, data, count * itemsize);
    byteswap(out.data() + head, count, itemsize);
    return out;
}

}  // namespace mm
