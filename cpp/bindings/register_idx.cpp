// The IDX reader and writer: IdxError, read_idx, read_idx_bytes, encode_idx.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings/common.hpp"
#include "data/idx.hpp"

using namespace mm;
using namespace mm::bindings;

namespace {

py::dtype idx_dtype(uint8_t code) {
    switch (code) {
        case 0x08: return py::dtype("u1");
        case 0x09: return py::dtype("i1");
        case 0x0B: return py::dtype("i2");
        case 0x0C: return py::dtype("i4");
        case 0x0D: return py::dtype("f4");
        case 0x0E: return py::dtype("f8");
    }
    throw IdxError("unknown IDX type code");
}

py::array read_from(ByteSource& src, const std::string& name) {
    IdxHeader h = read_idx_header(src, name);
    // NumPy computes strides from every nonzero dimension, so even an empty array
    // needs their product (times the itemsize) to fit in a signed size.
    uint64_t span = h.itemsize;
    for (uint64_t d : h.dims)
        if (d && span > (uint64_t)PY_SSIZE_T_MAX / d) {
            throw IdxError(name + ": NumPy cannot make this array: its dimensions are too large");
        } else if (d) {
            span *= d;
        }
    std::vector<py::ssize_t> shape(h.dims.begin(), h.dims.end());
    py::array out(idx_dtype(h.type_code), shape);
    void* dst = out.mutable_data();
    // Between chunks: Ctrl-C (a 1 GiB gzip file takes seconds to inflate).
    StopCheck stop;
    stop.progress = py::none();
    try {
        py::gil_scoped_release nogil;
        read_idx_body(src, h, dst, name, &StopCheck::signals, &stop);
    } catch (const IdxInterrupted&) {
        stop.rethrow();
        throw;
    }
    return out;
}

// path: bytes (os.fsencode: any name the OS accepts); name: a printable str.
py::array read_idx_path(const py::bytes& path, const std::string& name) {
    const std::string p = path;
    std::unique_ptr<ByteSource> src;
    {
        py::gil_scoped_release nogil;
        src = open_idx_file(p, name);
    }
    return read_from(*src, name);
}

py::array read_idx_buffer(py::buffer data, const std::string& name) {
    py::buffer_info info = data.request();
    if (info.ndim != 1 || info.itemsize != 1 || (info.ndim == 1 && info.strides[0] != 1))
        throw py::value_error(name + ": expected a contiguous bytes-like object");
    auto src = open_idx_memory(info.ptr, (size_t)info.size, name);
    return read_from(*src, name);
}

py::bytes encode_idx_array(py::array arr, int type_code) {
    if (!(arr.flags() & py::array::c_style)) throw py::value_error("encode_idx: array must be C-contiguous");
    if ((size_t)arr.itemsize() != idx_itemsize((uint8_t)type_code))
        throw py::value_error("encode_idx: itemsize does not match the type code");
    std::vector<uint64_t> dims(arr.shape(), arr.shape() + arr.ndim());
    auto buf = encode_idx((uint8_t)type_code, dims, arr.data());
    return py::bytes(reinterpret_cast<const char*>(buf.data()), buf.size());
}

}  // namespace

void mm::bindings::register_idx(py::module_& m) {
    py::register_exception<IdxError>(m, "IdxError", PyExc_ValueError);

    m.def("read_idx", &read_idx_path, py::arg("path"), py::arg("name"));
    m.def("read_idx_bytes", &read_idx_buffer, py::arg("data"), py::arg("name") = "<bytes>");
    m.def("encode_idx", &encode_idx_array, py::arg("array"), py::arg("type_code"));
}
