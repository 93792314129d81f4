/* A program outside the project, built against an installed vmitap: it
 * includes only the umbrella header and uses the public API. */
#include <stdio.h>

#include <vmitap/vmitap.h>

int main(void)
{
    vmt_core *core;
    vmt_mock *mock;
    vmt_pa root, pa = 0;
    if (vmt_mock_core_new(NULL, &core, &mock) != VMT_OK)
        return 1;
    vmt_status st = vmt_mock_new_root(mock, &root);
    if (st == VMT_OK)
        st = vmt_mock_map(mock, root, 0xffffffff80000000ull, 0x200000, VMT_MOCK_2M, 0);
    if (st == VMT_OK)
        st = vmt_core_translate(core, vmt_ctx(0xffffffff80001234ull, root), &pa);
    vmt_core_free(core);
    printf("installed vmitap: translate -> %s, pa 0x%llx\n", vmt_status_str(st),
           (unsigned long long)pa);
    return st == VMT_OK && pa == 0x201234 ? 0 : 1;
}
