#include <keyvisor/registry.h>

int main(void);

int
main(void)
{
	return 0;
}
